"""Offline part-of-speech classes for the evaluation protocol: noun, function word or other.

The paper tags every answer word alone with NLTK's `pos_tag` and keeps two classes:
nouns (NN NNS NNP NNPS) and function words (CC DT EX MD POS PRP PRP$ UH WDT WP WP$ WRB).
Function words are closed classes, listed here exactly (`FUNCTION_WORDS`). Nouns are open,
so tamx decides them by a rule (`word_class`, written out in docs/eval.md):

1. a word with no letter (digits, punctuation) is "other" (CD or punctuation);
2. a closed-class function word is "function";
3. another closed-class word (IN, TO, CD number words, RP) or a form of be/have/do is "other";
4. a word whose lemma is a word of a dataset category name is "noun";
5. a known verb, adjective or adverb form (small lists) is "other", as is a word with a
   verb, adjective or adverb suffix (-ing, -ed, -ly, -ous, -ful, -ive, -able, -ible, -less,
   -ish, -est) unless it is a listed noun with that ending (building, bed, family, ...);
6. everything else is "noun", as a tagger does with an unknown word.

`lemma` is a small plural-noun lemmatizer (WordNet's `lemmatize(word, "n")` in the cases
that matter for category names): it only has to map a plural and its singular to one form,
because the same function lemmatizes both the answer's nouns and the category names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

NOUN, FUNCTION, OTHER = "noun", "function", "other"
NOUN_TAGS = ("NN", "NNS", "NNP", "NNPS")
FUNCTION_TAGS = ("CC", "DT", "EX", "MD", "POS", "PRP", "PRP$", "UH", "WDT", "WP", "WP$", "WRB")

# Penn Treebank closed classes (Santorini 1990), lower case. A word listed under two tags
# ("her": PRP and PRP$; "that": DT, WDT and IN) is a function word either way.
FUNCTION_WORDS: dict[str, tuple[str, ...]] = {
    "CC": ("and", "or", "but", "nor", "plus", "minus", "&", "'n'"),
    "DT": (
        "a", "an", "the", "this", "that", "these", "those", "some", "any", "no", "every", "each",
        "another", "all", "both", "either", "neither",
    ),
    "EX": ("there",),
    "MD": ("can", "could", "may", "might", "must", "shall", "should", "will", "would", "ought", "'ll", "'d"),
    "POS": ("'s", "'", "’s"),
    "PRP": (
        "i", "me", "you", "he", "him", "she", "her", "it", "we", "us", "they", "them", "myself",
        "yourself", "himself", "herself", "itself", "ourselves", "yourselves", "themselves",
        "mine", "yours", "hers", "ours", "theirs", "'em",
    ),
    "PRP$": ("my", "your", "his", "its", "our", "their"),
    "UH": ("oh", "yes", "yeah", "hello", "hi", "wow", "okay", "ok", "uh", "um", "hey", "ah", "oops", "hmm", "alas"),
    "WDT": ("which", "whatever", "whichever"),
    "WP": ("who", "whom", "what", "whoever", "whomever"),
    "WP$": ("whose",),
    "WRB": ("when", "where", "why", "how", "whenever", "wherever", "whereby"),
}  # fmt: skip


def _words(text: str) -> frozenset[str]:
    """A word list written as whitespace-separated text."""
    return frozenset(text.split())


_FUNCTION = {word: tag for tag, words in FUNCTION_WORDS.items() for word in words}

# Closed classes that are not function words in the protocol (IN, TO, CD, RP) and auxiliaries.
OTHER_CLOSED = _words(
    """
    on in at of with by for from to near under over above below behind beside besides between among
    amongst through across along alongside around against into onto upon inside outside within
    without during before after since until till while because although though if whether unless
    than as like about towards toward beneath underneath beyond past off out up down via per despite
    except throughout amid atop next zero one two three four five six seven eight nine ten eleven
    twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty
    sixty seventy eighty ninety hundred thousand million billion be is are am was were been being
    're 'm 've has have had having do does did done doing n't not
    """
)

VERBS = _words(
    """
    sit sits sat stand stands stood hold holds held lie lies lay lays laid look looks ride rides
    rode ridden walk walks eat eats ate eaten fly flies flew flown wear wears wore worn appear
    appears seem seems show shows shown contain contains include includes make makes made take takes
    took taken go goes went gone get gets got gotten watch watches wait waits carry carries use uses
    see sees saw seen hang hangs hung run runs ran swim swims swam throw throws threw thrown catch
    catches caught cut cuts put puts keep keeps kept pose poses try tries give gives gave given come
    comes came grow grows grew grown fill fills cover covers feature depict depicts surround
    surrounds face faces lean leans rest rests prepare prepares enjoy enjoys seen set sets let lets
    leave leaves left read reads write writes wrote
    """
)

ADJECTIVES = _words(
    """
    white black red blue green yellow brown gray grey pink purple golden silver large small big
    little tall short young old new several many few much more most less least other different
    wooden empty full open busy cloudy sunny snowy grassy rocky sandy dirty clean hot cold warm cool
    long high low dark bright colorful colourful beautiful various single double same modern vintage
    outdoor indoor electric wet dry fresh sliced tiny huge giant pretty nice good great bad fine own
    whole main wide narrow thick thin heavy light soft hard round square flat clear blurry shiny
    fluffy furry leafy happy sad young elderly adult male female front top bottom near far left
    right middle central various numerous tasty delicious crowded cute lush
    """
)

ADVERBS = _words(
    """
    very also too just only here now then together away again still even almost nearly quite rather
    really so well back nearby around perhaps maybe often always never sometimes soon already yet
    however else instead otherwise ahead apart aside
    """
)

# Nouns with an ending that rule 5 reads as a verb, adjective or adverb suffix.
SUFFIX_NOUNS = _words(
    """
    building ceiling clothing painting railing awning icing topping frosting stuffing bedding
    wedding evening morning thing something nothing anything everything pudding dumpling sibling
    duckling seedling herring lighting siding landing parking crossing opening dining king ring wing
    string spring swing sling sing ping bling sting bed shed sled seed weed speed steed reed breed
    creed greed need red hundred family fly butterfly dragonfly jelly belly lily ally rally bully
    tally assembly supply reply anomaly monopoly italy holly gully forest chest nest vest test west
    crest guest quest interest contest rest pest olive knife wife life hive archive drive table
    cable vegetable stable
    """
)

_SUFFIXES = ("ing", "ed", "ly", "ous", "ful", "ive", "able", "ible", "less", "ish", "est")

_IRREGULAR_PLURALS = {
    "men": "man", "women": "woman", "people": "person", "children": "child", "feet": "foot",
    "teeth": "tooth", "mice": "mouse", "geese": "goose", "oxen": "ox", "dice": "die",
    "knives": "knife", "wives": "wife", "lives": "life", "leaves": "leaf", "loaves": "loaf",
    "halves": "half", "shelves": "shelf", "wolves": "wolf", "calves": "calf", "scarves": "scarf",
    "hooves": "hoof", "thieves": "thief", "elves": "elf",
    "buses": "bus", "gases": "gas", "lenses": "lens", "canvases": "canvas", "atlases": "atlas",
    "tomatoes": "tomato", "potatoes": "potato", "heroes": "hero", "echoes": "echo",
    "volcanoes": "volcano", "mangoes": "mango", "mosquitoes": "mosquito", "buffaloes": "buffalo",
    "dominoes": "domino", "torpedoes": "torpedo",
}  # fmt: skip
# -ie nouns whose plural is not -y + s; and words that look plural but are not.
_IE_NOUNS = _words(
    """
    cookie movie pie tie zombie hippie selfie brownie calorie goalie rookie smoothie hoodie lie die
    beanie birdie collie magpie pixie sweetie
    """
)
_NOT_PLURAL = _words(
    """
    bus gas lens canvas atlas glass grass class mass bass dress cross kiss boss moss chess news
    series species scissors pants jeans shorts trousers sheep fish deer tennis physics this its his
    always perhaps as is was has yes us thus plus
    """
)


def lemma(word: str) -> str:
    """The singular of a plural noun, else the word itself (lower case)."""
    word = word.lower()
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if len(word) <= 3 or word in _NOT_PLURAL or not word.endswith("s"):
        return word
    if word.endswith(("ss", "us")):
        return word
    if word.endswith("ies"):
        return word[:-1] if word[:-1] in _IE_NOUNS else word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    return word[:-1]


_WORD_CHARS = re.compile(r"^[^\w'’&]+|[^\w'’&]+$")


def normalise_word(text: str) -> str:
    """A word's text as the tagger sees it: stripped of spaces and edge punctuation, lower case."""
    return _WORD_CHARS.sub("", text.strip()).lower()


def category_lemmas(names: Iterable[str]) -> dict[str, set[str]]:
    """For each category name, the lemmas of its words ("dining table" -> {"dining", "table"})."""
    return {name: {lemma(part) for part in re.split(r"[^A-Za-z]+", name) if part} for name in names}


def _has_suffix(word: str) -> bool:
    for suffix in _SUFFIXES:
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) >= 3 and re.search(r"[aeiouy]", stem):
            return True
    return False


def word_class(text: str, category_words: frozenset[str] | set[str] = frozenset()) -> str:
    """NOUN, FUNCTION or OTHER for one word tagged alone (rules 1-6 of the module docstring).

    category_words: the lemmas of every word of the dataset's category names.
    """
    word = normalise_word(text)
    if not re.search(r"[^\W\d_]", word):
        return OTHER
    if word in _FUNCTION:
        return FUNCTION
    if word in OTHER_CLOSED:
        return OTHER
    if lemma(word) in category_words:
        return NOUN
    if word in VERBS or word in ADJECTIVES or word in ADVERBS:
        return OTHER
    if word not in SUFFIX_NOUNS and lemma(word) not in SUFFIX_NOUNS and _has_suffix(word):
        return OTHER
    return NOUN


class Tagger:
    """Word classes for the protocol; `kind` "rules" (offline, default) or "nltk" (NLTK's pos_tag)."""

    def __init__(self, kind: str = "rules", category_words: Iterable[str] = ()) -> None:
        if kind not in ("rules", "nltk"):
            raise ValueError(f"unknown tagger {kind!r}; use 'rules' or 'nltk'")
        self.kind = kind
        self.category_words = frozenset(category_words)
        self._cache: dict[str, str] = {}
        self._pos_tag = _load_nltk() if kind == "nltk" else None

    def __call__(self, text: str) -> str:
        word = normalise_word(text)
        if word not in self._cache:
            self._cache[word] = self._classify(text.strip(), word)
        return self._cache[word]

    def _classify(self, raw: str, word: str) -> str:
        if self._pos_tag is None:
            return word_class(word, self.category_words)
        if not word:
            return OTHER
        tag = self._pos_tag([_WORD_CHARS.sub("", raw)])[0][1]
        return NOUN if tag in NOUN_TAGS else FUNCTION if tag in FUNCTION_TAGS else OTHER


def _load_nltk():
    """NLTK's pos_tag, checked to have its tagger data; raise TamxError saying how to get it."""
    from .errors import TamxError

    try:
        import nltk
    except ImportError:
        raise TamxError("--tagger nltk needs NLTK: pip install nltk==3.8.1 (the version the paper used)") from None
    try:
        nltk.pos_tag(["dog"])
    except LookupError:
        raise TamxError(
            "--tagger nltk needs NLTK's tagger data, which pip does not install: run "
            "python -c \"import nltk; nltk.download('averaged_perceptron_tagger'); "
            "nltk.download('averaged_perceptron_tagger_eng')\" (or set NLTK_DATA to a folder holding it), "
            "or use the offline default --tagger rules"
        ) from None
    return nltk.pos_tag
