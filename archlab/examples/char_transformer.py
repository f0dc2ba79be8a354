"""Character-level transformer LM on the built-in Python-stdlib corpus (no download).

Depth 1..3, width {64, 96}, per-layer heads {2, 4} and FFN {128, 256}; context 64 characters;
sandwich rule. Run: ``archlab train char_transformer`` (a couple of minutes on 2 CPU cores).
For the benchmark corpus use ``CharLMTask("/path/to/tinyshakespeare.txt", context=64)``.
"""

from archlab import Experiment
from archlab.spaces.library import transformer_lm_space
from archlab.supernets.tasks import CharLMTask
from archlab.supernets.training.config import TrainConfig

space = transformer_lm_space("char_transformer", n_layer=(1, 3), d_model=(64, 96), n_head=(2, 4), ffn=(128, 256))

experiment = Experiment(
    name="char_transformer",
    space=space,
    family="transformer_lm",
    task=CharLMTask(context=64),
    supernet_args={"sharing": "entangled"},
    train=TrainConfig(
        steps=300,
        batch_size=32,
        lr=2e-3,
        weight_decay=0.01,
        warmup_steps=20,
        strategy="sandwich",
        strategy_options={"n_random": 1},
        checkpoint_every=100,
        eval_batches=8,
        log_every=20,
        seed=0,
    ),
)
