"""archlab.supernets"""
