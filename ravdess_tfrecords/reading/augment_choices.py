"""The named choices of the training augmentation: which augmentations, and where they run.

Only names, no TensorFlow: an entry point defines and checks its flags with them before
TensorFlow loads (``trainers.fit``); ``augment_ops`` and ``pipeline`` use them.
"""

# Every augmentation switch (``augment_ops.AugmentConfig.only``): video flip, crop and colour,
# SpecAugment-style time and frequency masks on the MFCCs.
AUGMENTATIONS = ("flip", "crop", "color", "time_mask", "freq_mask")
# host: in the tf.data pipeline; device: a layer in front of the model, in the training step.
AUGMENT_ON = ("host", "device")
