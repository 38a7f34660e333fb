"""higherpose: multi-person pose estimation in crowds with compiled C++/CUDA operators.

`higherpose.ops` holds the operators and can be imported alone. Heavier parts (models, data,
inference) are imported from their own subpackages.
"""
__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: `import higherpose` stays light (no models, data or config are imported).
    if name == "Predictor":
        from .predictor import Predictor
        return Predictor
    raise AttributeError(f"module 'higherpose' has no attribute {name!r}")
