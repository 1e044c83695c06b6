"""netgrow.cli"""
