"""The long-term memory quality set (issue 12, item 6), written for bench/memory_quality.py.

Generated, deterministically (a fixed seed), from the templates below: synthetic users, each with
facts and preferences planted over several sessions between filler chat, some of them later
contradicted ("my favourite colour is teal now"), and questions whose right answer needs one fact.
Each planted statement is phrased by one of several templates, and some sit next to personal data
(a name, an e-mail address) that the privacy stage must remove without taking the fact with it.

A question names the relation it needs; its right answer is the newest value of that relation,
and the values it replaced are the superseded ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

SEED = 12
USERS = 40
TENANT = "bench"
DAY = 86400.0
#: the first session's time (2026-01-01), then a session a week
START = 1_767_225_600.0


@dataclass(frozen=True)
class Message:
    session: int
    at: float
    text: str
    #: the relation and value this message plants (None: filler)
    relation: str | None = None
    value: str | None = None


@dataclass(frozen=True)
class Question:
    text: str
    relation: str
    #: the newest value: the right answer
    value: str
    #: values said earlier and replaced since
    superseded: tuple[str, ...] = ()


@dataclass
class User:
    id: str
    messages: list[Message] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


COLOURS = ["teal", "red", "green", "purple", "orange", "yellow", "navy blue", "maroon", "turquoise", "lilac"]
#: two dish names that look like people's names to a named-entity model (over-redaction is measured)
FOODS = ["sushi", "lasagne", "ramen", "tacos", "paella", "curry", "dumplings", "risotto", "Pad Thai",
         "Beef Wellington"]
ALLERGENS = ["peanuts", "shellfish", "gluten", "sesame", "tree nuts", "eggs", "soy", "strawberries"]
DIETS = ["vegetarian", "vegan", "pescatarian", "gluten-free", "keto"]
JOBS = ["nurse", "teacher", "software engineer", "architect", "chef", "pharmacist", "data scientist", "pilot",
        "librarian", "electrician"]
GENRES = ["jazz", "techno", "classical music", "hip hop", "folk music", "heavy metal", "reggae", "opera"]
STYLES = ["watercolour", "pixel art", "anime", "oil painting", "pencil sketch", "cyberpunk", "art deco"]
LENGTHS = ["short", "detailed"]
CITIES = ["Lisbon", "Toronto", "Osaka", "Nairobi", "Krakow", "Melbourne"]
NAMES = ["Margaret Thornbury", "Oliver Hansen", "Priya Raman", "Lucas Moreau", "Aisha Bello", "Tomasz Nowak"]

#: how a value is stated; {v} is the value, {n} a person's name, {e} an e-mail address, {c} a city
STATE = {
    "favourite_colour": ["My favourite colour is {v}.", "By the way, {v} is my favourite colour.",
                         "Just so you know, my favorite color is {v}.",
                         "My cousin {n} keeps asking, but my favourite colour is {v}."],
    "favourite_food": ["My favourite food is {v}.", "Honestly {v} is my favourite food.",
                       "My all-time favourite food is {v}, I could eat it every day."],
    "allergic_to": ["I'm allergic to {v}.", "Please remember I am severely allergic to {v}.",
                    "Note for recipes: I'm allergic to {v}, my doctor {n} confirmed it."],
    "diet": ["I'm {v}.", "I've been {v} for years now.", "For context, I'm strictly {v}.", "I am {V}."],
    "occupation": ["I work as a {v}.", "I'm a {v}, so my weeks are busy.", "I work as a {v} in {c}."],
    "likes": ["I really love {v}.", "I love listening to {v}.", "I enjoy {v} a lot."],
    "answer_length": {"short": ["Please keep answers short.", "Keep your answers brief, I read on my phone."],
                      "detailed": ["Please explain in detail.", "I prefer detailed answers with the reasoning."]},
    "image_style": ["I like watercolour images.", "Draw my images in {v}.", "I love {v} pictures."],
}
#: how a value is later replaced; {v} the new value, {o} the old one
CHANGE = {
    "favourite_colour": ["My favourite colour is {v} now.", "I changed my mind: my favourite colour is {v} now.",
                         "My favourite colour is {o}, no wait, it's {v}."],
    "diet": ["I'm no longer {o}.", "I'm not {o} any more."],
    "likes": ["I don't like {o} any more.", "I no longer like {o}."],
    "answer_length": {"short": ["Actually, keep answers short please."],
                      "detailed": ["Please explain in detail from now on."]},
    "occupation": ["I work as a {v} now."],
}
#: questions whose answer needs the relation
ASK = {
    "favourite_colour": ["Which colour should I paint my bedroom walls?", "Pick a colour for my new bike.",
                         "What colour would suit a scarf for me?"],
    "favourite_food": ["What should I order for dinner tonight? Something I love.",
                       "Suggest a dish I'd be happy to eat on my birthday."],
    "allergic_to": ["Which ingredients must I avoid when I eat out?", "Is this snack safe for my allergy?"],
    "diet": ["Plan a dinner menu for me this week.", "What should I cook tonight given what I eat?"],
    "occupation": ["Help me plan a tough week at work.", "What skills should I build for my job?"],
    "likes": ["Recommend some music for my commute.", "What kind of concert should I go to?"],
    "answer_length": ["How does a heat pump work?", "Explain how vaccines train the immune system."],
    #: image prompts: the style preference is what must reach them
    "image_style": ["a lighthouse at dusk", "a fox in a snowy forest", "a bowl of fruit on a table"],
}
FILLER = [
    "How do I repot a fern without hurting the roots?", "What's a good way to learn touch typing?",
    "Explain how compound interest works.", "Give me three tips for sleeping better.",
    "What is the capital of Australia?", "How long should I boil an egg for a soft yolk?",
    "Write a haiku about autumn rain.", "How do noise-cancelling headphones work?",
    "What are some stretches for a stiff back?", "Summarise the plot of Hamlet in two sentences.",
    "My colleague {n} sent me a spreadsheet; how do I make a pivot table?",
    "Draft a polite reply to {e} declining a meeting.", "How do I fix a squeaky door hinge?",
    "What is the difference between weather and climate?", "Suggest a name for a book club.",
    "How many litres of water should I drink a day?", "I'm flying to {c} next month, what should I pack?",
    "How do I convert Celsius to Fahrenheit?", "What's a fun fact about octopuses?",
    "Help me write a birthday message for {n}.",
]
EMAILS = ["m.thornbury@example.org", "oliver.h@mailbox.example", "priya.r@example.net"]


def _fill(template: str, rng: random.Random, **values: str) -> str:
    return template.format(n=rng.choice(NAMES), e=rng.choice(EMAILS), c=rng.choice(CITIES), **values)


def _statement(relation: str, value: str, rng: random.Random) -> str:
    templates = STATE[relation]
    if isinstance(templates, dict):
        templates = templates[value]
    if relation == "image_style" and value != "watercolour":
        templates = templates[1:]
    return _fill(rng.choice(templates), rng, v=value, V=value.capitalize())


def _change(relation: str, old: str, new: str, rng: random.Random) -> str:
    templates = CHANGE[relation]
    if isinstance(templates, dict):
        templates = templates[new]
    return _fill(rng.choice(templates), rng, v=new, o=old)


def _user(i: int, rng: random.Random) -> User:
    user = User(f"user{i:02d}")
    values = {
        "favourite_colour": rng.choice(COLOURS), "favourite_food": rng.choice(FOODS),
        "allergic_to": rng.choice(ALLERGENS), "diet": rng.choice(DIETS), "occupation": rng.choice(JOBS),
        "likes": rng.choice(GENRES), "answer_length": rng.choice(LENGTHS), "image_style": rng.choice(STYLES),
    }
    planted = rng.sample(list(values), k=6)
    changes: dict[str, tuple[str, str]] = {}  # relation -> (old, new)
    for relation in planted:
        if relation in CHANGE and rng.random() < 0.45:
            old = values[relation]
            match relation:
                case "favourite_colour":
                    new = rng.choice([c for c in COLOURS if c != old])
                case "occupation":
                    new = rng.choice([j for j in JOBS if j != old])
                case "answer_length":
                    new = "detailed" if old == "short" else "short"
                case "diet":
                    new = f"not {old}"
                case _:  # likes: no longer
                    new = f"not {old}"
            changes[relation] = (old, new)
    sessions = 4
    plan: list[tuple[int, str | None]] = [(rng.randrange(0, 2), r) for r in planted]
    plan += [(rng.randrange(2, sessions), f"change:{r}") for r in changes]
    plan += [(s, None) for s in range(sessions) for _ in range(rng.randint(3, 5))]
    rng.shuffle(plan)
    plan.sort(key=lambda p: p[0])
    for n, (session, what) in enumerate(plan):
        at = START + session * 7 * DAY + n * 600.0
        if what is None:
            user.messages.append(Message(session, at, _fill(rng.choice(FILLER), rng)))
        elif what.startswith("change:"):
            relation = what.removeprefix("change:")
            old, new = changes[relation]
            user.messages.append(Message(session, at, _change(relation, old, new, rng), relation, new))
        else:
            user.messages.append(Message(session, at, _statement(what, values[what], rng), what, values[what]))
    for relation in planted:
        if relation not in ASK:
            continue
        old, new = changes.get(relation, (None, values[relation]))
        user.questions.append(Question(rng.choice(ASK[relation]), relation, new, (old,) if old else ()))
    return user


def users(count: int = USERS, seed: int = SEED) -> list[User]:
    rng = random.Random(seed)
    return [_user(i, rng) for i in range(count)]


if __name__ == "__main__":
    made = users()
    print(f"{len(made)} users, {sum(len(u.messages) for u in made)} messages, "
          f"{sum(1 for u in made for m in u.messages if m.relation)} planted, "
          f"{sum(len(u.questions) for u in made)} questions, "
          f"{sum(1 for u in made for q in u.questions if q.superseded)} after a contradiction")
    for m in made[0].messages:
        print(m.session, m.relation, m.value, "|", m.text)
    for q in made[0].questions:
        print("Q", q.relation, q.value, q.superseded, "|", q.text)
