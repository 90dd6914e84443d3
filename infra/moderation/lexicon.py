"""Category lexicons: phrases that signal each moderation category, with how strongly.

Written for genloom's moderation, in plain English, and matched against the folded text
(normalize.fold: lower case, l33t and homoglyphs undone, repeated letters cut to one; the phrases
are folded the same way when compiled). Phrase syntax: words are regular expressions; a space
matches any run of non-word characters, or none ("killyourself"); `..` lets up to three words
come between. A phrase matches on word boundaries.

Weights: 0.9 names the harm outright ("kill yourself"), 0.6 is a strong sign that context could
still excuse, 0.35 is a weak sign that counts only together with another. A category's score is
1 - prod(1 - weight) over the distinct phrases that matched.

Bare words that are everyday language elsewhere ("kill the process", "shoot a photo", "breast
cancer") are never phrases on their own: a phrase pairs the word with a target or an intent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from re import _constants as _ops
from re import _parser

from schemas.enums import ModerationCategory as C

_YOU = r"(you|u|ya|yourself|urself|him|her|them|everyone|every ?one|all of you)"
_GROUP = (r"(jews?|muslims?|christians?|blacks?|whites?|asians?|mexicans?|arabs?|immigrants?|gays?|lesbians?"
          r"|trans(gender)?s?|women|woman|girls|men|hindus?|sikhs?|africans?|latinos?|refugees?|gypsies|roma"
          r"|disabled|retards?)")
_SLURS = r"(n[i1]gg(er|a)s?|k[i1]kes?|sp[i1]cs?|ch[i1]nks?|fagg?ots?|f[a4]gs?|tr[a4]nn(y|ies)|wetbacks?|raghead s?|towelheads?)"
#: asking how to do something: "how to", "how do I", "teach me to", "steps to"
_HOWTO = (r"(how|ways?|best way|easiest way|steps|guide|instructions|teach me|tel me|show me|explain)"
          r"( (do|can|could|would|should|to) (i|you|we|one|someone))?( to)?")
_KILL = r"(kil|murder|slaughter|shoot|stab|behead|strangle|execute|exterminate|butcher|burn)"

#: category -> (phrase, weight)
LEXICON: dict[C, list[tuple[str, float]]] = {
    C.HARASSMENT: [
        (r"you (are|r|re) (a|an|such a|so) .. (idiot|moron|loser|retard|bitch|slut|whore|cunt|pig|worthless|pathetic|stupid|ugly|disgusting|dumb)", 0.9),
        (r"(stupid|dumb|worthless|pathetic|ugly|fat|useless) (bitch|cunt|whore|slut|idiot|moron|loser|piece of shit)", 0.85),
        (r"(shut up|shut your mouth|go to hell|screw you|fuck you|fuck off|piss off|eat shit)", 0.75),
        (r"nobody (likes|loves|wants) you", 0.7),
        (r"you (are|r|re) (worthless|pathetic|useless|disgusting|a waste of (space|air))", 0.85),
        (r"(idiot|moron|loser|bitch|cunt|whore|slut|retard|dumbass|jackass|asshole)", 0.35),
        (r"(everyone|everybody) hates you", 0.8),
        (r"((go|just|please|you should) )?(kil|hang|shoot) (yourself|urself|youself)|kys", 0.9),
        (r"(i|we) (will|wil|gonna|going to) (find|hunt) you", 0.6),
    ],
    C.HARASSMENT_THREATENING: [
        (rf"(i|we|i'?ll|we'?ll|gonna|going to|will) .. {_KILL} {_YOU}", 0.9),
        (rf"(i|we) (will|wil|'?ll|am going to|are going to|gonna) (hurt|beat|break|end|rape|find and) .. {_YOU}", 0.85),
        (r"you (are|r|re) (dead|going to die|gonna die)", 0.85),
        (r"(watch your back|you'?ll regret|i know where you live|sleep with one eye open)", 0.7),
        (r"(i|we) (hope|wish) you (die|get (raped|killed|shot|cancer))", 0.85),
        (rf"(beat|punch|kick) (the shit|the crap|the hell) out of {_YOU}", 0.8),
    ],
    C.HATE: [
        (rf"{_SLURS}", 0.8),
        (rf"(all|those|these|the|fucking|filthy|dirty) {_GROUP} (are|r) .. (animals|vermin|subhuman|inferior|disgusting|parasites|rats|cockroaches|trash|scum|savages|evil|stupid|criminals|a disease|a plague)", 0.9),
        (rf"{_GROUP} (are|r) (not|n'?t) (human|people)", 0.9),
        (rf"(i|we) hate (all )?{_GROUP}", 0.8),
        (r"(subhuman|untermensch|inferior race|master race|white power|race traitor|14 words|heil hitler|sieg heil)", 0.75),
        (rf"{_GROUP} (should|must|need to) (go back|be banned|not be allowed|leave)", 0.6),
    ],
    C.HATE_THREATENING: [
        (rf"(kil|exterminate|gas|lynch|hang|shoot|burn|wipe out|get rid of|eradicate) (all|every|the|those|these) {_GROUP}", 0.9),
        (rf"{_GROUP} (should|must|need to|deserve to) (die|be killed|be exterminated|be gassed|be shot|be hanged|burn)", 0.9),
        (r"(final solution|race war|ethnic cleansing|day of the rope)", 0.6),
    ],
    C.SELF_HARM: [
        (r"(suicide|suicidal|self harm|selfharm|cutting myself|cut myself|hurt myself|end my life|kil myself|overdose)", 0.6),
        (r"(anorexia|bulimia|pro ana|thinspiration|purge after eating|starve myself)", 0.6),
        (r"(don'?t|do not) want to (live|be alive|wake up)", 0.7),
        (r"(kil|hang|shoot) (yourself|urself)|kys", 0.6),
    ],
    C.SELF_HARM_INTENT: [
        (r"(i|i'?m|i am) (want|going|gonna|planning|plan|ready|about) (to )?(kil|hurt|cut|end|harm|off) (myself|my life|it al)", 0.9),
        (r"(i|i'?m|i am) (going to|gonna|wil|want to|plan to) (commit suicide|overdose|jump off|hang myself|slit my wrists)", 0.9),
        (r"(i|i'?m|i am) (want|wanna) (to )?die", 0.8),
        (r"(tonight|tomorrow) i (wil|'?l) (end|kil) (it|myself)", 0.9),
        (r"(no reason to live|better off dead|wrote my suicide note|saying goodbye forever)", 0.75),
    ],
    C.SELF_HARM_INSTRUCTIONS: [
        (rf"({_HOWTO}|painless way to|quickest way to) (kil|hang|cut|harm|hurt|overdose|poison|starve) (yourself|myself|urself|oneself)", 0.9),
        (rf"({_HOWTO}|painless way to|quickest way to) (commit suicide|end (my|your) life|die painlessly|slit .. wrists)", 0.9),
        (r"(how many|what dose of) .. (pils|tablets|paracetamol|tylenol|ibuprofen|sleeping pils) .. (kil|die|overdose|lethal|fatal)", 0.9),
        (r"(lethal dose|how to hide (cuts|scars|self harm)|purge without)", 0.7),
    ],
    C.SEXUAL: [
        (r"(porn|porno|pornography|xxx|hentai|nudes|sex tape|blowjob|handjob|cumshot|orgasm|masturbat\w*|dildo|vibrator|erotic)", 0.7),
        (r"(fuck|fucking|fucked|screw|bang|ride) (me|her|him) (hard|harder|deep|all night)", 0.85),
        (r"(naked|nude|topless) .. (pics|photos|pictures|girls|women|body|bodies|selfies)", 0.7),
        (r"(suck|lick) (my|his|her) (cock|dick|pussy|tits|nipples|clit)", 0.9),
        (r"(cock|dick|pussy|tits|boobs|clit|penis|vagina) .. (hard|wet|throbbing|dripping|moan)", 0.8),
        (r"(have|having|had) sex with", 0.6),
        (r"(horny|aroused|sexy|moan(ed|ing)?|strip(ped|ping)? naked)", 0.35),
    ],
    C.SEXUAL_MINORS: [
        (r"(child|children|kid|kids|minor|minors|underage|under age|preteen|pre teen|little (girl|boy)|schoolgirl|schoolboy|loli|shota|toddler|[0-9]{1,2} ?(year|yr)s? old) .. (porn|sex|nude|naked|sexual|erotic|fuck|orgasm|rape|molest)", 0.95),
        (r"(porn|sex|nude|naked|sexual|erotic|fuck|orgasm|rape|molest) .. (child|children|kid|kids|minor|minors|underage|preteen|little (girl|boy)|schoolgirl|schoolboy|loli|toddler|[0-9]{1,2} ?(year|yr)s? old)", 0.95),
        (r"(cp|csam|jailbait|pedo|paedo|pedophile|paedophile|child porn)", 0.7),
    ],
    C.VIOLENCE: [
        (rf"{_KILL} (him|her|them|people|everyone|the (guard|police|cop|hostage|teacher|kids|children|students)|civilians)", 0.7),
        (r"(mass shooting|school shooting|massacre|bloodbath|genocide|torture|tortured|torturing|beheading|terrorist attack|suicide bomb\w*|car bomb)", 0.6),
        (r"(beat|beats|beating|stabbed|stab|stabbing|shot|shooting|strangled|punched) .. (to death|until (he|she|they) (died|stopped)|bleeding)", 0.8),
        (r"(blood|gore|corpse|dead body|bodies) .. (everywhere|spray\w*|splatter\w*|pool\w*|pile\w*)", 0.5),
        (r"(attack|assault|ambush|bomb|shoot up) (the|a) (school|church|mosque|synagogue|mall|crowd|concert)", 0.85),
        (r"(violent|violence|brutal|brutaly|weapon|gun|knife|rifle)", 0.2),
    ],
    C.VIOLENCE_GRAPHIC: [
        (r"(guts|intestines|entrails|organs|brains?|eyeballs?) .. (spil\w*|hanging out|ripped out|splatter\w*|oozing|everywhere|torn out|gouged)", 0.9),
        (r"(skin|flesh|face) .. (peeled|ripped|torn|melted|burned) (off|away|open)", 0.85),
        (r"(dismember\w*|decapitat\w*|disembowel\w*|mutilat\w*|flayed|severed (head|limbs?|arm|leg))", 0.85),
        (r"(blood|gore) .. (spray\w*|gush\w*|pool\w*|splatter\w*|soaked|everywhere)", 0.6),
        (r"(crushed skul|skul cracked|bones snapped|bone sticking out|exposed bone)", 0.8),
    ],
    C.ILLICIT: [
        (rf"{_HOWTO} (steal|shoplift|launder money|evade taxes|forge|counterfeit|hack into|break into|pick a lock|hotwire|phish|scam|smuggle|bribe)", 0.9),
        (rf"{_HOWTO} (make|cook|synthesize|produce|grow|buy|get) .. (meth|methamphetamine|crack|heroin|cocaine|fentanyl|lsd|mdma|ecstasy|drugs)", 0.9),
        (r"(steal|stealing|clone|cloning) .. (credit card|identity|passwords?|bank (account|details))", 0.7),
        (r"(write|create|make|build) .. (ransomware|malware|keylogger|virus|botnet|phishing (email|page|site))", 0.85),
        (r"(without getting caught|avoid (the )?police|untraceable|dark web market|fake (id|passport|money))", 0.6),
        (r"(meth|heroin|cocaine|fentanyl) (recipe|lab|dealer)", 0.7),
    ],
    C.ILLICIT_VIOLENT: [
        (rf"{_HOWTO} (make|build|assemble|create) .. ((?<!bath.)bomb|explosive|pipe bomb|ied|molotov|napalm|grenade|nerve (gas|agent)|sarin|ricin|anthrax|ghost gun|silencer|bioweapon|chemical weapon)", 0.95),
        (rf"{_HOWTO} (kil|murder|poison|strangle|stab|shoot) (someone|a person|my (wife|husband|boss|neighbou?r|father|mother|teacher)|people|him|her) .. (get away|without|quietly|untraceable|undetected)?", 0.9),
        (r"(hire|find) (a )?(hitman|hit man|assassin)", 0.85),
        (r"(pipe bomb|ied|molotov cocktail|nerve agent|sarin|ricin|thermite) .. (recipe|instructions|ingredients|make|build)", 0.85),
        (r"(dispose of|get rid of|hide) (a|the) (body|corpse)", 0.8),
    ],
}

#: a category also counts fully toward these broader ones (OpenAI's sub-categories imply their parents)
IMPLIES: dict[C, tuple[C, ...]] = {
    C.HARASSMENT_THREATENING: (C.HARASSMENT,),
    C.HATE_THREATENING: (C.HATE,),
    C.SELF_HARM_INTENT: (C.SELF_HARM,),
    C.SELF_HARM_INSTRUCTIONS: (C.SELF_HARM,),
    C.SEXUAL_MINORS: (C.SEXUAL,),
    C.VIOLENCE_GRAPHIC: (C.VIOLENCE,),
    C.ILLICIT_VIOLENT: (C.ILLICIT,),
}

_GAP = r"(?:\W+\w+){0,3}"
_RUN2 = re.compile(r"([a-z])\1+")


def compile_phrase(phrase: str) -> re.Pattern[str]:
    """A phrase in folded form as a regular expression (see the module docstring)."""
    folded = _RUN2.sub(r"\1", phrase.lower())
    body = folded.replace(" .. ", _GAP + r"\W*").replace(" ", r"\W*")
    return re.compile(rf"(?<![a-z0-9]){body}(?![a-z0-9])")


def required_literals(pattern: re.Pattern[str]) -> frozenset[str] | None:
    """Strings one of which every match of `pattern` contains, read from its parsed form; None where no
    such set is known (the pattern must then always be searched).

    A run of literal characters must appear as written; an alternation needs one of what each branch
    needs; a repeat at least once needs what its body needs; anything else (a character class, an
    optional part, an assertion) needs nothing known. Of what a sequence's parts need, the set whose
    shortest string is longest is kept: it rules out the most texts."""
    if pattern.flags & (re.IGNORECASE | re.VERBOSE):  # a literal may then match other text than itself
        return None
    try:
        return _needs(list(_parser.parse(pattern.pattern, pattern.flags)))
    except Exception:  # a form this reading does not know: no prefilter, never a wrong one
        return None


def _needs(items) -> frozenset[str] | None:
    best: frozenset[str] | None = None
    run = ""

    def keep(need: frozenset[str] | None) -> None:
        nonlocal best
        if need and (best is None or min(map(len, need)) > min(map(len, best))):
            best = need

    for op, arg in items:
        if op is _ops.LITERAL:
            run += chr(arg)
            continue
        if run:
            keep(frozenset([run]))
            run = ""
        if op is _ops.SUBPATTERN:
            keep(_needs(arg[-1]))
        elif op is _ops.BRANCH:
            branches = [_needs(b) for b in arg[1]]
            if all(branches):
                keep(frozenset().union(*branches))
        elif op in (_ops.MAX_REPEAT, _ops.MIN_REPEAT, _ops.POSSESSIVE_REPEAT) and arg[0] >= 1:
            keep(_needs(arg[2]))
        elif op is _ops.ATOMIC_GROUP:
            keep(_needs(arg))
    if run:
        keep(frozenset([run]))
    return best


@dataclass(frozen=True)
class CompiledLexicon:
    """Every phrase of `LEXICON`, compiled once per process, with the literal strings one of which a text
    must contain for it to match (`required_literals`; () where none are known)."""

    phrases: tuple[tuple[C, re.Pattern[str], float, tuple[str, ...]], ...]

    @classmethod
    def build(cls, lexicon: dict[C, list[tuple[str, float]]] = LEXICON) -> CompiledLexicon:
        compiled = [(category, compile_phrase(p), w) for category, entries in lexicon.items() for p, w in entries]
        return cls(tuple((c, pattern, w, tuple(sorted(required_literals(pattern) or ())))
                         for c, pattern, w in compiled))

    def score(self, folded: str) -> dict[C, float]:
        """Every category's score for text already in folded form (0 where nothing matched).

        A phrase is searched for only where the text holds one of its required literals: a substring
        test each, so a clean text costs a fraction of searching every phrase, with the same scores."""
        matched = []
        for phrase in self.phrases:
            for literal in phrase[3]:
                if literal in folded:
                    break
            else:
                if phrase[3]:
                    continue
            if phrase[1].search(folded):
                matched.append(phrase)
        return combine(matched)


def combine(matched) -> dict[C, float]:
    """Every category's score from the phrases that matched (`CompiledLexicon.phrases`' entries): 1 -
    prod(1 - weight) over its phrases, and a sub-category's score counts toward its parents."""
    keep = {c: 1.0 for c in C}
    for category, _, weight, _ in matched:
        keep[category] *= 1.0 - weight
    scores = {c: 1.0 - k for c, k in keep.items()}
    for child, parents in IMPLIES.items():
        for parent in parents:
            scores[parent] = max(scores[parent], scores[child])
    return scores
