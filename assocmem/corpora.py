r"""Offline corpora for the transformer chapter (chapter 6): nothing is downloaded.

- :func:`english_corpus`: the English documentation text that ships with CPython
  (``pydoc_data.topics``, about 465k characters), at character or byte level, split into a training
  prefix and a validation suffix.
- :class:`Grammar` and :func:`question_formation_grammar`: a probabilistic context-free grammar of
  declaratives and their questions in the style of the Question-Formation task used by [NBDH24]
  (a vocabulary of 68 words). Its exact entropy rate per token is computed from the grammar, which
  gives the loss floor a language model of this stream can reach.

A corpus is a :class:`Corpus`: integer token streams ``train`` and ``validation`` (numpy int64) and
the ``vocabulary`` (``vocabulary[i]`` is the string of token ``i``).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from . import _validate as check

__all__ = [
    "Corpus",
    "Grammar",
    "english_corpus",
    "question_formation_grammar",
    "grammar_corpus",
    "SMALL_LEXICON",
    "LARGE_LEXICON",
    "widened_lexicon",
    "CORPORA",
    "named_corpus",
]


@dataclass(frozen=True)
class Corpus:
    """Token streams for language modelling: ``train`` and ``validation`` (int64 arrays) over
    ``vocabulary``; ``entropy_rate`` is the exact entropy per token in nats when known, else ``None``."""

    name: str
    train: np.ndarray = field(repr=False)
    validation: np.ndarray = field(repr=False)
    vocabulary: tuple[str, ...] = field(repr=False)
    entropy_rate: float | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def decode(self, tokens) -> str:
        """The text of a token sequence (characters joined; words joined by spaces).

        Parameters
        ----------
        tokens : array of int
            Vocabulary indices, any shape (read in row-major order).
        """
        parts = [self.vocabulary[int(t)] for t in np.asarray(tokens).ravel()]
        separator = "" if all(len(p) <= 1 for p in self.vocabulary) else " "
        return separator.join(parts)


def english_text() -> str:
    """The English text shipped with CPython: ``pydoc_data.topics``, topics joined in sorted order."""
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics))


def english_corpus(level: str = "char", validation_fraction: float = 0.1, block: int = 4096) -> Corpus:
    """The CPython documentation text as a token stream.

    Parameters
    ----------
    level : {"char", "byte"}
        ``"char"``: one token per distinct character (about 100); ``"byte"``: the UTF-8 bytes (256).
    validation_fraction : float in (0, 1)
        Fraction of the text held out. The text is cut into blocks of ``block`` tokens and block ``i``
        is held out when ``floor((i + 1) f) > floor(i f)`` (every tenth block for ``f = 0.1``): a
        deterministic split whose two parts cover the same topics, so validation loss measures
        generalisation rather than a change of subject.
    block : int
        Length of the blocks of the split.
    """
    check.choice("level", level, {"char", "byte"})
    fraction = check.real("validation_fraction", validation_fraction, low=0.0, high=1.0,
                          low_open=True, high_open=True)
    block = check.positive_int("block", block)
    text = english_text()
    if level == "byte":
        tokens = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        vocabulary = tuple(chr(b) for b in range(256))
    else:
        vocabulary = tuple(sorted(set(text)))
        index = {c: i for i, c in enumerate(vocabulary)}
        tokens = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
    block_index = np.arange(len(tokens)) // block
    held_out = np.floor((block_index + 1) * fraction) > np.floor(block_index * fraction)
    return Corpus(f"english-{level}", tokens[~held_out], tokens[held_out], vocabulary)


@dataclass(frozen=True)
class Grammar:
    r"""A probabilistic context-free grammar, acyclic, whose sentences are declaratives.

    ``rules`` maps each nonterminal to a tuple of ``(probability, right-hand side)`` pairs; a symbol
    that is not a key of ``rules`` is a word. ``start`` is the sentence symbol and ``moved`` the
    nonterminal whose words move to the front to make the question (the main auxiliary). One
    *example* is ``declarative + [question_marker] + question + [end_marker]``.

    The entropy of a derivation from ``A`` obeys
    :math:`H(A) = -\sum_r p_r \log p_r + \sum_r p_r \sum_{B \in r} H(B)`; when the grammar is
    unambiguous (each sentence has one derivation) it is the entropy of the sentence. Questions and
    markers are determined by the declarative, so the stream of i.i.d. examples has entropy rate
    :math:`H(S) / (2\,E[|S|] + 2)` nats per token (a renewal process with self-delimiting examples).
    """

    rules: dict
    start: str = "S"
    moved: str = "AUX_MAIN"
    question_marker: str = "quest"
    end_marker: str = "?"

    def __post_init__(self):
        for head, options in self.rules.items():
            total = sum(p for p, _ in options)
            if not options or any(p <= 0 for p, _ in options) or not math.isclose(total, 1.0):
                raise ValueError(f"rules[{head!r}] must have positive probabilities summing to 1, "
                                 f"got total {total}")
        for name in (self.start, self.moved):
            if name not in self.rules:
                raise ValueError(f"{name!r} must be a nonterminal of the grammar")
        self._check_acyclic()

    def _check_acyclic(self) -> None:
        state: dict[str, int] = {}

        def visit(symbol: str) -> None:
            if state.get(symbol) == 1:
                raise ValueError(f"the grammar must be acyclic; {symbol!r} derives itself")
            if symbol in self.rules and state.get(symbol) != 2:
                state[symbol] = 1
                for _, rhs in self.rules[symbol]:
                    for child in rhs:
                        visit(child)
                state[symbol] = 2

        visit(self.start)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Every word, then the two markers (token ``i`` is ``vocabulary[i]``)."""
        words = sorted({s for options in self.rules.values() for _, rhs in options for s in rhs
                        if s not in self.rules})
        return tuple(words + [self.question_marker, self.end_marker])

    def derivation_entropy(self, symbol: str | None = None) -> float:
        """:math:`H(A)` in nats for the nonterminal ``symbol`` (default: the start symbol).

        Parameters
        ----------
        symbol : str, optional
            A nonterminal of ``rules`` (a terminal has entropy 0).
        """
        return self._entropy_and_length(symbol or self.start, {})[0]

    def expected_length(self, symbol: str | None = None) -> float:
        """Expected number of words derived from ``symbol`` (default: a declarative).

        Parameters
        ----------
        symbol : str, optional
            A symbol of the grammar (a terminal derives one word).
        """
        return self._entropy_and_length(symbol or self.start, {})[1]

    def _entropy_and_length(self, symbol: str, memo: dict) -> tuple[float, float]:
        if symbol not in self.rules:
            return 0.0, 1.0
        if symbol not in memo:
            entropy, length = 0.0, 0.0
            for p, rhs in self.rules[symbol]:
                children = [self._entropy_and_length(child, memo) for child in rhs]
                entropy += -p * math.log(p) + p * sum(h for h, _ in children)
                length += p * sum(n for _, n in children)
            memo[symbol] = entropy, length
        return memo[symbol]

    def entropy_rate(self) -> float:
        """Exact entropy per token of the example stream, nats: :math:`H(S)/(2E|S| + 2)`."""
        return self.derivation_entropy() / (2.0 * self.expected_length() + 2.0)

    def sample_example(self, rng: np.random.Generator) -> list[str]:
        """One example: a declarative, the question marker, its question, the end marker.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of the uniforms that choose each expansion.
        """
        uniforms = (rng.random() for _ in itertools.count())
        words, moved = self._expand(self.start, uniforms, inside_moved=False)
        pairs = list(zip(words, moved, strict=True))
        question = [w for w, m in pairs if m] + [w for w, m in pairs if not m]
        return words + [self.question_marker] + question + [self.end_marker]

    def _expand(self, symbol: str, uniforms, inside_moved: bool):
        if symbol not in self.rules:
            return [symbol], [inside_moved]
        options = self.rules[symbol]
        cumulative = list(itertools.accumulate(p for p, _ in options))
        pick = min(bisect.bisect_right(cumulative, next(uniforms) * cumulative[-1]), len(options) - 1)
        words, moved = [], []
        for child in options[pick][1]:
            w, m = self._expand(child, uniforms, inside_moved or symbol == self.moved)
            words += w
            moved += m
        return words, moved

    def sample_stream(self, n_tokens: int, seed: int) -> np.ndarray:
        """At least ``n_tokens`` tokens of i.i.d. examples (whole examples), as vocabulary indices.

        Parameters
        ----------
        n_tokens : int
            Minimum number of tokens, :math:`\\ge 1`; whole examples are drawn until it is reached.
        seed : int
            Seed of the draw, non-negative.
        """
        n_tokens = check.positive_int("n_tokens", n_tokens)
        rng = np.random.default_rng(check.seed("seed", seed))
        index = {w: i for i, w in enumerate(self.vocabulary)}
        tokens: list[int] = []
        while len(tokens) < n_tokens:
            tokens += [index[w] for w in self.sample_example(rng)]
        return np.asarray(tokens, dtype=np.int64)



def _uniform(words) -> tuple:
    return tuple((1.0 / len(words), (w,)) for w in words)


DETERMINERS = ("the", "some", "my", "your", "our", "her")
NOUNS = ("newt", "orangutan", "peacock", "quail", "raven", "salamander", "tyrannosaurus", "unicorn",
         "vulture", "walrus", "xylophone", "yak", "zebra", "dog", "cat", "bird", "mouse", "fish", "goat")
AUXILIARIES = ("can", "will", "could", "would", "should", "might")
INTRANSITIVE = ("giggle", "smile", "sleep", "swim", "wait", "move", "change", "read", "eat", "run",
                "laugh", "dance", "sing", "cry")
TRANSITIVE = ("entertain", "amuse", "high_five", "applaud", "confuse", "admire", "accept", "remember",
              "comfort", "see", "follow", "call", "help", "visit")
RELATIVIZERS = ("who", "that")
PREPOSITIONS = ("near", "behind", "with", "above", "below")


def question_formation_grammar(p_relative: float = 0.25, p_prepositional: float = 0.25,
                               p_transitive: float = 0.5, *, words: dict | None = None) -> Grammar:
    r"""The Question-Formation-style grammar: 66 words and 2 markers, 68 tokens.

    ``S -> NP_SUBJ AUX_MAIN VP``; the subject is ``DET N``, with a relative clause
    ``REL AUX VP_RC`` (probability ``p_relative``) or a prepositional phrase ``P DET N``
    (``p_prepositional``); a verb phrase is intransitive ``V_I`` or transitive ``V_T DET N``
    (``p_transitive``). The question fronts the main auxiliary, as in *the newt who can swim will
    giggle* → *will the newt who can swim giggle*. Word classes are disjoint, so the grammar is
    unambiguous. ``words`` overrides word lists by class name (``DET``, ``N``, ``AUX``, ``V_I``,
    ``V_T``, ``REL``, ``P``): small lists give a grammar small enough to enumerate.

    Parameters
    ----------
    p_relative : float
        Probability of a relative clause on the subject, in :math:`[0, 1]`.
    p_prepositional : float
        Probability of a prepositional phrase on the subject, in :math:`[0, 1]`;
        ``p_relative + p_prepositional < 1``.
    p_transitive : float
        Probability of a transitive verb phrase, in :math:`(0, 1)`.
    words : dict of str to sequence of str, optional
        Word lists replacing the default ones, by class name; classes must be non-empty and disjoint.
    """
    p_rel = check.real("p_relative", p_relative, low=0.0, high=1.0)
    p_pp = check.real("p_prepositional", p_prepositional, low=0.0, high=1.0)
    p_tr = check.real("p_transitive", p_transitive, low=0.0, high=1.0, low_open=True, high_open=True)
    if p_rel + p_pp >= 1.0:
        raise ValueError(f"p_relative + p_prepositional must be < 1, got {p_rel + p_pp}")
    lexicon = {"DET": DETERMINERS, "N": NOUNS, "AUX": AUXILIARIES, "V_I": INTRANSITIVE,
               "V_T": TRANSITIVE, "REL": RELATIVIZERS, "P": PREPOSITIONS}
    if words is not None and not isinstance(words, Mapping):
        raise TypeError(f"words must be a dict of word lists by class name, got {words!r:.60}")
    checked = {}
    for name, listed in (words or {}).items():
        listed = tuple(listed) if isinstance(listed, Iterable) and not isinstance(listed, str) else None
        if listed is None or not all(isinstance(w, str) for w in listed):
            raise TypeError(f"words[{name!r}] must be a sequence of strings, got {words[name]!r:.60}")
        checked[name] = listed
    words = checked
    unknown = sorted(set(words or {}) - set(lexicon))
    if unknown:
        raise ValueError(f"words has unknown classes {unknown}; allowed {sorted(lexicon)}")
    lexicon.update({k: tuple(v) for k, v in (words or {}).items()})
    classes = list(lexicon.values())
    if any(not c for c in classes) or len({w for c in classes for w in c}) != sum(map(len, classes)):
        raise ValueError("words: every class needs at least one word and classes must not share words")
    subject = [(1.0 - p_rel - p_pp, ("DET", "N")), (p_rel, ("DET", "N", "RC")), (p_pp, ("DET", "N", "PP"))]
    verb_phrase = ((1.0 - p_tr, ("V_I",)), (p_tr, ("V_T", "DET", "N")))
    rules = {
        "S": ((1.0, ("NP_SUBJ", "AUX_MAIN", "VP")),),
        "NP_SUBJ": tuple((p, rhs) for p, rhs in subject if p > 0),
        "RC": ((1.0, ("REL", "AUX", "VP")),),
        "PP": ((1.0, ("P", "DET", "N")),),
        "VP": verb_phrase,
        "AUX_MAIN": ((1.0, ("AUX",)),),
        **{name: _uniform(ws) for name, ws in lexicon.items()},
    }
    return Grammar(rules)


def grammar_corpus(grammar: Grammar | None = None, n_train: int = 200_000, n_validation: int = 20_000,
                   seed: int = 0) -> Corpus:
    """Token streams of i.i.d. examples from ``grammar`` (default :func:`question_formation_grammar`),
    training and validation drawn with independent seeds; ``entropy_rate`` is exact.

    Parameters
    ----------
    grammar : Grammar, optional
        The grammar to sample (default :func:`question_formation_grammar`).
    n_train : int
        Minimum number of training tokens, :math:`\\ge 1`.
    n_validation : int
        Minimum number of validation tokens, :math:`\\ge 1`.
    seed : int
        Seed; training uses ``2 * seed`` and validation ``2 * seed + 1``.
    """
    if grammar is not None and not isinstance(grammar, Grammar):
        raise TypeError(f"grammar must be a Grammar (e.g. question_formation_grammar()), got {grammar!r:.60}")
    grammar = grammar or question_formation_grammar()
    seed = check.seed("seed", seed)
    for name, n in (("n_train", n_train), ("n_validation", n_validation)):
        check.budget(name, nbytes=64.0 * check.positive_int(name, n), work=2e3 * n,
                     formula="a Python-level draw and int64 storage of every token")
    train = grammar.sample_stream(n_train, seed=2 * seed)
    validation = grammar.sample_stream(n_validation, seed=2 * seed + 1)
    return Corpus("question-formation", train, validation, grammar.vocabulary, grammar.entropy_rate())


SMALL_LEXICON = {"DET": ("the",), "N": ("newt", "yak", "zebra", "dog"), "AUX": ("can", "will"),
                 "V_I": ("giggle", "smile", "swim"), "V_T": ("see", "amuse", "call"), "REL": ("who",),
                 "P": ("near", "with")}
"""A lexicon of 16 words: the same grammar with an entropy rate of about 0.45 nats per token."""


def widened_lexicon(factor: int) -> dict:
    """The default lexicon with every open word class (``DET``, ``N``, ``AUX``, ``V_I``, ``V_T``,
    ``P``) widened ``factor`` times by numbered variants (``newt``, ``newt2``, ``newt3``, ...);
    the relativizers stay. A larger lexicon raises the entropy rate and nothing else.

    Parameters
    ----------
    factor : int
        Variants per word (1 gives the default lexicon back).
    """
    factor = check.positive_int("factor", factor)
    check.budget("factor", nbytes=200.0 * 40 * factor, work=1e3 * factor, formula="about 40 words x factor strings")
    classes = {"DET": DETERMINERS, "N": NOUNS, "AUX": AUXILIARIES, "V_I": INTRANSITIVE,
               "V_T": TRANSITIVE, "P": PREPOSITIONS}
    return {name: tuple(w if k == 1 else f"{w}{k}" for k in range(1, factor + 1) for w in words)
            for name, words in classes.items()}


LARGE_LEXICON = widened_lexicon(3)
"""The default lexicon widened threefold: 194 words, an entropy rate of about 1.55 nats per token."""

CORPORA = {
    "english": lambda: english_corpus("char"),
    "grammar": lambda: grammar_corpus(),
    "grammar-small": lambda: grammar_corpus(question_formation_grammar(words=SMALL_LEXICON)),
    "grammar-large": lambda: grammar_corpus(question_formation_grammar(words=LARGE_LEXICON)),
}
"""The corpora the experiments name: the CPython text (characters), the 68-token grammar (entropy
rate 1.09 nats per token), its 16-word variant (0.45) and its threefold-widened variant (1.55)."""


def named_corpus(name: str) -> Corpus:
    """One of :data:`CORPORA` by name: ``"english"``, ``"grammar"``, ``"grammar-small"`` or
    ``"grammar-large"``.

    Parameters
    ----------
    name : str
        The corpus's name.
    """
    return CORPORA[check.choice("name", name, set(CORPORA))]()
