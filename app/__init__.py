"""archlab.app"""
