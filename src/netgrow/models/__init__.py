"""netgrow.models"""
