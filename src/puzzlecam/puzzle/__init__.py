"""puzzle"""
