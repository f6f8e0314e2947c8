"""cams"""
