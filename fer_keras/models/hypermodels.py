"""KerasTuner HyperModels over the registry: one class, parameterised by registry name.

``build(hp)`` draws builder options from the entry's search space and compiles the model.
The compile step is deliberately simple (one loss per output kind) and replaceable through
``compile_fn``, so the training engine can supply the theses' losses and schedules.
"""
import keras
import keras_tuner as kt

from fer_keras.models.registry import REGISTRY
from fer_keras.models.search_spaces import split

LOSSES = {"category": "categorical_crossentropy", "va": "mse", "au": "binary_crossentropy"}
OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
              "rmsprop": keras.optimizers.RMSprop}


def default_compile(model, learning_rate=1e-4, optimizer="adam", lr_decay=0.0, **pipeline):
    """Adam (the theses' usual choice), ``lr_decay`` as Keras 2's per-step inverse-time decay, and a
    loss per output: CCE, MSE, sigmoid CE. ``pipeline`` values (batch size, sequence length) are
    the caller's to feed."""
    lr = keras.optimizers.schedules.InverseTimeDecay(learning_rate, 1, lr_decay) if lr_decay else learning_rate
    model.compile(optimizer=OPTIMIZERS[optimizer](learning_rate=lr),
                  loss={name: LOSSES[name] for name in model.output_names})
    return model


class RegistryHyperModel(kt.HyperModel):
    """The HyperModel of registry entry ``name``; ``fixed`` options are never searched."""

    def __init__(self, name, compile_fn=default_compile, **fixed):
        super().__init__(name=name, tunable=True)
        self.entry = REGISTRY[name]
        self.entry.options(**fixed)  # unknown keys fail here, not in the first trial
        self.fixed = fixed
        self.compile_fn = compile_fn

    def build(self, hp):
        options, compile_args, pipeline = self.split(hp)
        model = self.entry.builder(**self.entry.options(**options))
        return self.compile_fn(model, **compile_args, **pipeline)

    def split(self, hp):
        """Trial ``hp`` as (builder options, compile arguments, data.pipeline values)."""
        return split(self.entry.space(hp), self.fixed)
