"""netgrow.graph"""
