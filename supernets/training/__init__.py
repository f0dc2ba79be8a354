"""Training a supernet: ``trainer`` (the loop and its one step), ``config`` (``TrainConfig``),
``strategies`` (which architectures a step trains), ``optim`` (``SliceAdamW``, optimizer and
schedule registries), ``evaluation``, ``checkpoint`` / ``weights`` (atomic, resumable, safe
formats), ``runguard`` (non-finite and signal guards) and ``distributed`` (DDP helpers).
"""
