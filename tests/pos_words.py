"""A hand-labelled word list for the offline word classes: frequent words of image captions.

Each word is labelled with the class of the Penn Treebank tag it takes most often on its own
(noun: NN NNS NNP NNPS; function: CC DT EX MD POS PRP PRP$ UH WDT WP WP$ WRB; other: the
rest). The labels are the implementer's, not NLTK's output: NLTK's tagger data could not be
downloaded where this was written (docs/eval.md).
"""

from __future__ import annotations


def _words(text: str) -> list[str]:
    return text.split()


_NOUNS = _words(
    """
    man men woman women person people child children boy girl dog dogs cat cats horse horses car cars bus buses
    truck train plane airplane boat bike bicycle motorcycle table tables chair chairs bench couch bed toilet sink
    kitchen room street road sidewalk field grass tree trees sky water beach ocean snow mountain building
    buildings city park food pizza sandwich plate bowl cake banana bananas apple oranges broccoli laptop phone
    television tv clock vase book books umbrella kite frisbee ball bat racket skateboard surfboard skis giraffe
    giraffes zebra zebras elephant elephants bear sheep cow cows bird birds player players game picture image
    photo front top side area group shirt hat glasses window wall floor door sign light pole fence background
    """
)
_FUNCTION = _words(
    """
    a an the this that these those some any no every each another all both either neither and or but nor there
    can could may might must shall should will would i me you he him she her it we us they them my your his its
    our their which who whom what whose when where why how 's oh yes
    """
)
_OTHER = _words(
    """
    on in at of with by for from to near under over above behind beside between next into onto through across
    around is are was were be been being has have had do does did sitting standing holding looking riding
    walking eating flying parked covered filled playing sits stands holds looks rides white black red blue green
    yellow brown large small big little tall young old several many other different wooden empty open very also
    together up down out two three one four five 2 10 . , ! ?
    """
)

HAND_LABELLED = [(w, "noun") for w in _NOUNS] + [(w, "function") for w in _FUNCTION] + [(w, "other") for w in _OTHER]
