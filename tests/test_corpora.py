"""Offline corpora: the CPython English text and the Question-Formation grammar (assocmem.corpora)."""

import itertools
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from assocmem import corpora

TINY = {"DET": ("the", "a"), "N": ("newt", "yak"), "AUX": ("can", "will"), "V_I": ("swim",),
        "V_T": ("see", "call"), "REL": ("who",), "P": ("near",)}


def enumerate_sentences(grammar, symbol):
    """Every (word tuple, probability) derivable from ``symbol``, by brute force."""
    if symbol not in grammar.rules:
        return [((symbol,), 1.0)]
    out = []
    for p, rhs in grammar.rules[symbol]:
        for parts in itertools.product(*(enumerate_sentences(grammar, child) for child in rhs)):
            words = tuple(w for part, _ in parts for w in part)
            out.append((words, p * math.prod(q for _, q in parts)))
    return out


def test_entropy_rate_matches_brute_force_enumeration_on_a_tiny_grammar():
    grammar = corpora.question_formation_grammar(p_relative=0.3, p_prepositional=0.2, p_transitive=0.4,
                                                 words=TINY)
    sentence_probs = defaultdict(float)
    for words, p in enumerate_sentences(grammar, "S"):
        sentence_probs[words] += p  # summing over derivations: ambiguity would show up here
    probs = np.array(list(sentence_probs.values()))
    assert probs.sum() == pytest.approx(1.0)
    entropy = -np.sum(probs * np.log(probs))
    length = sum(len(w) * p for w, p in sentence_probs.items())
    assert grammar.derivation_entropy() == pytest.approx(entropy, rel=1e-12)
    assert grammar.expected_length() == pytest.approx(length, rel=1e-12)
    assert grammar.entropy_rate() == pytest.approx(entropy / (2 * length + 2), rel=1e-12)


def test_sampled_examples_follow_the_enumerated_law():
    grammar = corpora.question_formation_grammar(words=TINY)
    law = defaultdict(float)
    for words, p in enumerate_sentences(grammar, "S"):
        law[words] += p
    rng = np.random.default_rng(0)
    examples = [grammar.sample_example(rng) for _ in range(20_000)]
    counts = Counter(tuple(ex[:ex.index("quest")]) for ex in examples)
    top = max(law, key=law.get)
    assert counts[top] / len(examples) == pytest.approx(law[top], abs=0.01)
    assert set(counts) <= set(law)


def test_question_fronts_the_main_auxiliary():
    grammar = corpora.question_formation_grammar()
    rng = np.random.default_rng(1)
    for _ in range(200):
        example = grammar.sample_example(rng)
        marker = example.index("quest")
        declarative, question = example[:marker], example[marker + 1:-1]
        assert example[-1] == "?" and len(question) == len(declarative)
        # the main auxiliary is the first one not opening a relative clause ("who can swim")
        main = next(i for i, w in enumerate(declarative)
                    if w in corpora.AUXILIARIES and declarative[i - 1] not in corpora.RELATIVIZERS)
        assert question[0] == declarative[main]
        assert question[1:] == declarative[:main] + declarative[main + 1:]


def test_default_grammar_has_68_tokens_and_a_stream_of_whole_examples():
    grammar = corpora.question_formation_grammar()
    assert len(grammar.vocabulary) == 68
    corpus = corpora.grammar_corpus(n_train=2_000, n_validation=500, seed=3)
    end = grammar.vocabulary.index("?")
    assert corpus.train[-1] == end and corpus.validation[-1] == end
    assert corpus.entropy_rate == pytest.approx(grammar.entropy_rate())
    again = corpora.grammar_corpus(n_train=2_000, n_validation=500, seed=3)
    np.testing.assert_array_equal(corpus.train, again.train)
    assert not np.array_equal(corpus.train[:500], corpus.validation[:500])


def test_english_corpus_is_the_cpython_text_split_in_interleaved_blocks():
    chars = corpora.english_corpus("char", validation_fraction=0.1, block=1000)
    text = corpora.english_text()
    assert len(chars.train) + len(chars.validation) == len(text)
    assert 400_000 < len(text) < 600_000
    assert len(chars.validation) == pytest.approx(0.1 * len(text), abs=1000)
    assert chars.decode(chars.train[:9000]) == text[:9000]
    assert chars.decode(chars.validation[:1000]) == text[9000:10_000]
    assert chars.decode(chars.train[9000:9010]) == text[10_000:10_010]
    raw = corpora.english_corpus("byte")
    assert raw.vocab_size == 256 and raw.train.max() < 256


@pytest.mark.parametrize("kwargs", [{"p_relative": 0.6, "p_prepositional": 0.5}, {"p_transitive": 1.0},
                                    {"words": {"ADJ": ("big",)}},
                                    {"words": {"N": ("newt",), "V_I": ("newt",)}},
                                    {"words": {"N": ()}}])
def test_invalid_grammar_parameters_raise(kwargs):
    with pytest.raises(ValueError):
        corpora.question_formation_grammar(**kwargs)


def test_invalid_grammars_and_corpus_names_raise():
    with pytest.raises(ValueError, match="acyclic"):
        corpora.Grammar({"S": ((1.0, ("S",)),), "AUX_MAIN": ((1.0, ("can",)),)})
    with pytest.raises(ValueError, match="summing to 1"):
        corpora.Grammar({"S": ((0.5, ("a",)),), "AUX_MAIN": ((1.0, ("can",)),)})
    with pytest.raises(ValueError, match="level"):
        corpora.english_corpus("word")
    with pytest.raises(ValueError, match="validation_fraction"):
        corpora.english_corpus(validation_fraction=1.0)
    with pytest.raises(ValueError, match="name"):
        corpora.named_corpus("klingon")


@pytest.mark.parametrize("factor", [2, 3])
def test_widened_lexicon_adds_log_factor_per_open_class_word(factor):
    # every word class but REL grows `factor` times, so each of the E|S| - E[#REL] words of a
    # declarative carries log(factor) more nats; E[#REL] = p_relative (one per relative clause)
    base = corpora.question_formation_grammar()
    wide = corpora.question_formation_grammar(words=corpora.widened_lexicon(factor))
    extra = math.log(factor) * (base.expected_length() - 0.25)
    assert wide.derivation_entropy() == pytest.approx(base.derivation_entropy() + extra, rel=1e-12)
    assert wide.expected_length() == pytest.approx(base.expected_length(), rel=1e-12)
    assert len(wide.vocabulary) == factor * (len(base.vocabulary) - 4) + 4  # REL (2) and markers (2) stay
    assert corpora.widened_lexicon(1)["N"] == corpora.NOUNS


def test_named_grammars_have_rates_below_near_and_above_one_nat():
    rates = {name: corpora.named_corpus(name).entropy_rate
             for name in ("grammar-small", "grammar", "grammar-large")}
    assert rates["grammar-small"] == pytest.approx(0.4464, abs=1e-4)
    assert rates["grammar"] == pytest.approx(1.0904, abs=1e-4)
    assert rates["grammar-large"] == pytest.approx(1.5511, abs=1e-4)
    with pytest.raises(ValueError, match="factor"):
        corpora.widened_lexicon(0)


# --- issue 13: a grammar that is not one, and word lists that are not lists of words, refused by name

@pytest.mark.parametrize("grammar", ["x", float("nan"), 3])
def test_grammar_corpus_names_a_bad_grammar(grammar):
    with pytest.raises(TypeError, match="grammar must be a Grammar"):
        corpora.grammar_corpus(grammar, n_train=10, n_validation=10)


@pytest.mark.parametrize(("words", "message"), [
    (float("nan"), "words must be a dict"),
    ("N", "words must be a dict"),
    ({"N": 3}, r"words\['N'\] must be a sequence of strings"),
    ({"N": "newt"}, r"words\['N'\] must be a sequence of strings"),   # not split into letters
    ({"N": ["newt", 2]}, r"words\['N'\] must be a sequence of strings"),
])
def test_question_formation_grammar_names_bad_words(words, message):
    with pytest.raises(TypeError, match=message):
        corpora.question_formation_grammar(words=words)


def test_question_formation_grammar_takes_any_sequence_of_words():
    from_generator = corpora.question_formation_grammar(words={"N": (w for w in ("newt", "yak"))})
    from_list = corpora.question_formation_grammar(words={"N": ["newt", "yak"]})
    assert from_generator.vocabulary == from_list.vocabulary
    assert from_generator.entropy_rate() == from_list.entropy_rate()
