"""netgrow.strategies"""
