"""archlab.search"""
