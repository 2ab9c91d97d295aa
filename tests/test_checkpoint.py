"""Training checkpoints are plain state dicts loaded with ``weights_only=True``: a crafted file runs
nothing, and a damaged one (truncated, empty, zero-filled, a directory, another object) is reported by
file name with the way to restart, never as a raw OSError/EOFError/KeyError or an unpickling of code."""

import pickle

import pytest
import torch

from assocmem import transformer as tf
from assocmem.corpora import grammar_corpus, question_formation_grammar

TINY = {"DET": ("the",), "N": ("newt", "yak"), "AUX": ("can",), "V_I": ("swim",), "V_T": ("see",),
        "REL": ("who",), "P": ("near",)}
SETTINGS = dict(steps=2, batch_size=4, eval_every=1, eval_windows=4, progress=False)


@pytest.fixture(scope="module")
def corpus():
    return grammar_corpus(question_formation_grammar(words=TINY), n_train=2_000, n_validation=500)


def _model(corpus):
    return tf.CausalTransformer(corpus.vocab_size, 8, 1, 2, 8, seed=0)


class _Payload:
    """Unpickling this object would create the file named by ``target`` (a stand-in for any code)."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_crafted_checkpoint_runs_nothing(corpus, tmp_path):
    path, target = tmp_path / "run.pt", tmp_path / "pwned"
    with open(path, "wb") as handle:
        pickle.dump({"model": _Payload(target)}, handle)   # plain pickle: torch.load reads it too
    torch.save({"model": _Payload(target)}, tmp_path / "zip.pt")
    for crafted in (path, tmp_path / "zip.pt"):
        with pytest.raises(ValueError, match=f"checkpoint {crafted} is damaged.*delete it to restart"):
            tf.train_language_model(_model(corpus), corpus, checkpoint=crafted, **SETTINGS)
    assert not target.exists(), "loading the checkpoint ran the payload"


@pytest.mark.parametrize("damage", ["truncated", "empty", "zeros", "directory", "other object"])
def test_a_damaged_checkpoint_is_reported_by_name(corpus, tmp_path, damage):
    path = tmp_path / "run.pt"
    tf.train_language_model(_model(corpus), corpus, checkpoint=path, **SETTINGS)
    data = path.read_bytes()
    assert len(data) > 100
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "zeros":
        path.write_bytes(bytes(len(data)))
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match=f"checkpoint {path} is damaged or not a checkpoint.*delete it"):
        tf.train_language_model(_model(corpus), corpus, checkpoint=path, **SETTINGS)


def test_a_checkpoint_holds_only_tensors_and_plain_values(corpus, tmp_path):
    path = tmp_path / "run.pt"
    tf.train_language_model(_model(corpus), corpus, checkpoint=path, **SETTINGS)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 2 and state["settings"]["steps"] == 2 and state["run"]["steps"] == [0, 1, 2]
    assert all(isinstance(v, torch.Tensor) for v in state["model"].values())
