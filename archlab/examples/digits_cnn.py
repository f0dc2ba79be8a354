"""Digits CNN: a MobileNetV3-like supernet on scikit-learn's 8x8 digits (no download).

3 stages, depth {1, 2, 3}, kernel {3, 5, 7} and expand {2, 3, 4} per block; trained with the
sandwich rule. Run: ``archlab train digits_cnn`` (a couple of minutes on 2 CPU cores); the
largest subnet reaches about 99% and the smallest about 97% validation accuracy with
inherited weights.
"""

from archlab import Experiment
from archlab.spaces.library import mobilenet_v3_space
from archlab.supernets.tasks import DigitsTask
from archlab.supernets.training.config import TrainConfig

space = mobilenet_v3_space("digits_cnn", n_stages=3, depth=(1, 2, 3), kernel=(3, 5, 7), expand=(2, 3, 4))

experiment = Experiment(
    name="digits_cnn",
    space=space,
    family="convnet",
    task=DigitsTask(),
    supernet_args={"sharing": "entangled", "head_channels": 128},
    train=TrainConfig(
        steps=200,
        batch_size=64,
        lr=3e-3,
        weight_decay=0.01,
        warmup_steps=10,
        strategy="sandwich",
        strategy_options={"n_random": 2},
        checkpoint_every=50,
        log_every=10,
        seed=0,
    ),
)
