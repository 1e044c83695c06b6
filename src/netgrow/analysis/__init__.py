"""netgrow.analysis"""
