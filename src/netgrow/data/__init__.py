"""netgrow.data"""
