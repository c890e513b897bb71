"""Model zoo: every architecture of the five theses, built by name.

    model = fer_keras.models.build("vggface_bgru", input_size=112, seq_len=40)
    fer_keras.models.names()            # every registry name
    fer_keras.models.hypermodel("c3d")  # its KerasTuner HyperModel
"""
from fer_keras.models.registry import REGISTRY


def names():
    """Every registry name, sorted."""
    return sorted(REGISTRY)


def entry(name):
    """The registry entry (builder, defaults, thesis, search space) of ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(names())}") from None


def build(name, **options):
    """Build registry model ``name`` as a Keras 3 functional model; options override defaults."""
    spec = entry(name)
    return spec.builder(**spec.options(**options))


def hypermodel(name, **fixed):
    """The KerasTuner HyperModel of ``name``, with ``fixed`` options kept out of the search."""
    from fer_keras.models.hypermodels import RegistryHyperModel
    entry(name)
    return RegistryHyperModel(name, **fixed)
