"""Normalisation, lexicons and the category classifier: obfuscated harm is found, everyday text is not."""

import pytest

from infra.moderation.lexicon import CompiledLexicon
from infra.moderation.normalize import fold, normalize
from infra.moderation.text import BlocklistClassifier, CategoryClassifier


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
