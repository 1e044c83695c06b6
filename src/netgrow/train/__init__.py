"""netgrow.train"""
