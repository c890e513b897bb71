"""Class orders, kept as data in one place so no model or pipeline hard-codes an order.

Thesis 000 never gives its full AFEW order (only that Angry sits at one-hot index 1), so the
toolkit uses the folder names of the AFEW 7.0 release in alphabetical order; a user who needs
another order passes it explicitly and it is recorded in every manifest.
"""

AFEW = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")

CLASS_ORDERS = {"afew": AFEW}


def class_order(dataset: str) -> tuple[str, ...]:
    """Return the class order of a dataset, with a clear error for an unknown name."""
    try:
        return CLASS_ORDERS[dataset]
    except KeyError:
        raise KeyError(f"unknown dataset {dataset!r}; known: {sorted(CLASS_ORDERS)}") from None
