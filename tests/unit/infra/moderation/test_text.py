"""Normalisation, lexicons and the category classifier: obfuscated harm is found, everyday text is not."""

import re

import pytest

from infra.moderation.lexicon import CompiledLexicon, combine, required_literals
from infra.moderation.normalize import fold, normalize
from infra.moderation.text import BlocklistClassifier, CategoryClassifier
from schemas.enums import ModerationCategory


@pytest.mark.parametrize("hidden, plain", [
    ("k i l l yourself", "kill yourself"),
    ("K.I.L.L Y.O.U", "kill you"),
    ("k1ll urs3lf", "kill urself"),
    ("kіll", "kill"),  # Cyrillic і
    ("fuuuuuck", "fuuck"),
    ("$tupid b1tch", "stupid bitch"),
    ("ｆｕｌｌ ｗｉｄｔｈ", "full width"),
])
def test_normalize_undoes_obfuscation(hidden, plain):
    assert normalize(hidden) == plain


def test_normalize_leaves_numbers_and_punctuation_alone():
    assert normalize("I have 5 cats! Wow!!!") == "i have 5 cats! wow!!!"
    assert fold("kill") == fold("kiiiill") == "kil"


LEXICON = CompiledLexicon.build()


def fired(text, at=0.5):
    return {c.value for c, s in LEXICON.score(fold(normalize(text))).items() if s >= at}


@pytest.mark.parametrize("text, category", [
    ("I will k1ll you", "harassment/threatening"),
    ("all immigrants are vermin", "hate"),
    ("I want to end my life tonight", "self-harm/intent"),
    ("what is the easiest way to kill myself", "self-harm/instructions"),
    ("how to make a p i p e bomb at home", "illicit/violent"),
    ("how to cook m3th in a kitchen", "illicit"),
    ("his guts spilled out and blood sprayed everywhere", "violence/graphic"),
    ("naked pics of 12 year old girls", "sexual/minors"),
    ("suck my d1ck", "sexual"),
])
def test_lexicons_find_each_category_through_obfuscation(text, category):
    assert category in fired(text)


def test_sub_categories_imply_their_parents():
    scores = fired("what is the easiest way to kill myself")
    assert {"self-harm", "self-harm/instructions"} <= scores
    assert {"sexual", "sexual/minors"} <= fired("child porn")


@pytest.mark.parametrize("text", [
    "kill the process with SIGKILL and restart it",
    "She shot a beautiful photo of the sunset.",
    "Breast cancer screening saves lives.",
    "The history of the Second World War in Europe.",
    "My therapist helped me with my anxiety.",
    "How do I cook rice in a pressure cooker?",
])
def test_everyday_text_fires_nothing(text):
    assert fired(text) == set()


def test_blocklist_matches_whole_words_in_folded_text():
    classifier = BlocklistClassifier(["darn"])
    hits = [s["blocklist"] for s in classifier.scores(["oh d4rn it", "darning socks", "DARN"])]
    assert hits == [1.0, 0.0, 1.0]


def test_profanity_counts_as_harassment_only_when_aimed_at_someone():
    model = {"you are shit": 1.0, "shit happens": 1.0}
    classifier = CategoryClassifier(profanity=lambda texts: [model.get(t, 0.0) for t in texts])
    aimed, not_aimed = classifier.scores(["you are shit", "shit happens"])
    assert aimed["harassment"] >= 0.5 > not_aimed["harassment"] > 0


@pytest.mark.slow
def test_the_real_profanity_model_is_batched_and_scores_abuse():
    scores = CategoryClassifier().scores(["you are a fucking idiot", "What a lovely day for a walk."])
    assert scores[0]["harassment"] >= 0.5 > scores[1]["harassment"]
    assert set(scores[1]) == {
        "harassment", "harassment/threatening", "hate", "hate/threatening", "self-harm", "self-harm/intent",
        "self-harm/instructions", "sexual", "sexual/minors", "violence", "violence/graphic", "illicit",
        "illicit/violent"}


def brute_force(folded):
    """Every phrase searched, as the lexicon scored before its prefilter."""
    return combine([phrase for phrase in LEXICON.phrases if phrase[1].search(folded)])


#: texts that fire phrases (optional parts present and absent, obfuscated, run together) and texts that do not
CORPUS = [
    "I will k1ll you", "i wil kil u", "killyourself", "go kill yourself now", "all immigrants are vermin",
    "jews are rats", "the jew is a rat", "I want to end my life tonight", "what is the easiest way to kill myself",
    "how to make a p i p e bomb at home", "how do i build a bomb", "how to cook m3th in a kitchen",
    "his guts spilled out and blood sprayed everywhere", "naked pics of 12 year old girls", "suck my d1ck",
    "child porn", "hire a hitman", "find an assassin", "dispose of the body", "get rid of a corpse",
    "write ransomware for me", "make a phishing page", "fake passport without getting caught",
    "kill the process with SIGKILL and restart it", "She shot a beautiful photo of the sunset.",
    "Breast cancer screening saves lives.", "How do I cook rice in a pressure cooker?", "",
    "Once upon a time a dragon painted the sea, and the villagers came to admire his work.",
]


@pytest.mark.parametrize("text", CORPUS)
def test_the_prefilter_scores_exactly_as_searching_every_phrase(text):
    folded = fold(normalize(text))
    assert LEXICON.score(folded) == brute_force(folded)


def test_every_phrase_of_the_lexicon_has_literals_to_screen_by():
    # a phrase without them is searched in every text: correct, but the prefilter's gain is gone
    assert all(literals for _, _, _, literals in LEXICON.phrases)
    assert sum(bool(LEXICON.score(fold(t))[c]) for t in CORPUS for c in ModerationCategory) > 10  # the corpus fires


@pytest.mark.parametrize("pattern, literals", [
    ("kill", {"kill"}),
    ("(kil|murder) (you|him)", {"kil", "murder"}),
    ("(?<![a-z])jews?(?![a-z])", {"jew"}),     # an optional letter is not required
    ("(big )?bomb", {"bomb"}),                  # nor an optional group
    ("(ab)+c", {"ab"}),                         # a repeat of at least one is
    ("x(?:\\W+\\w+){0,3}yz", {"yz"}),           # of a sequence, the set with the longest shortest string
    ("(how|ways?) to", {"how", "way"}),
])
def test_required_literals_of_a_pattern(pattern, literals):
    assert required_literals(re.compile(pattern)) == literals


@pytest.mark.parametrize("pattern", ["[a-z]+", "(kill|[0-9])", "a?b?", "(?i)kill"])
def test_a_pattern_without_known_literals_is_always_searched(pattern):
    assert required_literals(re.compile(pattern)) is None
