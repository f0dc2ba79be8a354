"""archlab.predictors"""
