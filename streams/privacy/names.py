"""Given names, for the name recognizer beside spaCy's (recognizers.find_names).

The small English spaCy model misses names it has not seen in context ("a portrait of Margaret
Thornbury holding ..."): a capitalised word from this list followed by one or two capitalised words
is taken for a person. The list spans many languages and leaves out given names that are common
words, months or places (May, Will, Grace, Jordan, Florence, Sydney), which would redact ordinary text.
"""

from __future__ import annotations

import re

FIRST_NAMES = frozenset("""
Aaron Abdul Abigail Adam Adebayo Adriana Adrian Ahmed Aiden Aisha Akira Alan Albert Aleksandr Alessandro
Alex Alexander Alexandra Alice Alicia Alina Alisha Amanda Amara Amelia Amir Amit Ana Anastasia Anders Andrea
Andreas Andrew Andrzej Angela Angelica Anita Ann Anna Anne Antoine Anton Antonio Arjun Arnav Astrid Aurora
Ayesha Barbara Beatriz Ben Benjamin Bernard Bianca Bjorn Brian Bruno Camille Carla Carlos Carmen Caroline
Catherine Cecilia Charles Charlotte Chen Chidi Chiara Chloe Christian Christina Christine Christopher Claire
Clara Claudia Colin Connor Cristina Daniel Daniela Dariusz David Deborah Deepak Diana Diego Dimitri Dmitri
Dominik Dorothy Duc Edward Elena Eleanor Elif Elijah Elisa Elizabeth Ella Emily Emil Emma Emmanuel Enrique
Eric Erik Ethan Eva Evelyn Fatima Felipe Felix Fernando Fiona Francesca Francesco Francisco Franziska
Gabriel Gabriela Georg George Gerhard Giovanni Giulia Giuseppe Gregory Gustav Hana Hannah Hans Harald Harriet
Harry Helen Helena Henrik Henry Hiroshi Hugo Ibrahim Igor Ines Ingrid Irina Isaac Isabel Isabella Ivan Jakob
James Jamal Jan Jana Jane Jasmine Javier Jennifer Jessica Jin Joanna Johan Johannes John Jonas Jonathan Jorge
Jose José Joseph Joshua Juan Julia Julian Juliana Julie Julien Jun Karen Karim Karin Karl Katarzyna Kate
Katharina Katherine Kenji Kevin Kim Klaus Kofi Kwame Lars Laura Lauren Leila Lena Leon Leonardo Liam Lina
Linda Ling Lisa Liu Lorenzo Louis Louise Luca Lucas Lucia Luis Lukas Magdalena Maja Manuel Marco Margaret
Maria Mariam Marie Marina Mario Marta Martin Martina Mary Mateo Matteo Matthew Maximilian Mehmet Mei Melanie
Mia Michael Michelle Miguel Mikhail Min Mohammed Muhammad Nadia Naomi Natalia Natasha Nathan Nicholas Nicola
Nicole Nikolai Nina Noah Nora Oliver Olivia Olusegun Omar Oscar Pablo Patricia Patrick Paul Paula Pavel
Pedro Peter Petra Philip Pierre Pietro Priya Rachel Rafael Rahul Rajesh Ramon Rebecca Richard Rita Robert
Roberto Rosa Ryan Sakura Samuel Sandra Sara Sarah Sebastian Sergei Sergio Shreya Simon Simone Sofia Sophia
Sophie Stefan Stefanie Stephanie Steven Susan Svetlana Sven Takeshi Tanaka Tatiana Teresa Thomas Tobias
Tomas Tomasz Valentina Vanessa Vera Veronica Viktor Vincent Vladimir Walter Wei Wilhelm William Xavier Yasmin
Yuki Yusuf Zainab Zara Zhang Zoe Oluwaseun Ngozi Tariq Farah Hamza Layla Yara Soren Søren Jiri Jiří Ewa
Agnieszka Piotr Krzysztof Bogdan Olga Yulia Oksana Taras Mehdi Reza Parisa Arash Nguyen Thi Minh Anh Linh
Sunita Anil Vikram Kavya Ananya Rohan Siddharth Haruto Yui Sora Minjun Seo Jisoo Hyun Ji Wen Xin Hao
""".split())


# --- which texts can hold a name spaCy would report ------------------------------------------

#: words that commonly open a sentence of a prompt and are never given names: a text whose every
#: capital is one of these at the start of a sentence (or "I") holds nothing spaCy's entity recognizer
#: would report as a person that engine._plausible keeps. Left out on purpose: words that are names
#: too (Will, May, Mark, Bill, Rose, Grace, Hope, Joy, Frank, Jack, Sue, Pat, Art, Drew, Ray, Dawn,
#: Faith, Summer, April, June, August) and every word of FIRST_NAMES, so such a text still meets spaCy
COMMON_OPENERS = frozenset("""
a about above according actually add after again all also although always am an and another any anyone
anything are as at be because before below besides between both but by can could create define describe
did do does done draw each either else even every everyone everything explain few find first fix for from
generate get give given go good had has have he hello help her here hers hey hi his how however if imagine
in instead is it its just keep last let list make many maybe me more most much must my name never next no
nobody none nor not nothing now of off often ok okay on once one only or other our ours out over perhaps
please provide quick really recommend rewrite same say see she should show so some someone something
sometimes still suggest summarise summarize sure tell thank thanks that the their theirs them then there
these they this those though through thus to today tomorrow too translate under until up us use very was
we well were what whatever when whenever where whether which while who whom whose why with without would
write yes yesterday yet you your yours compare convert calculate check choose consider continue correct
design edit estimate evaluate finish improve include is isn't it's don't doesn't can't won't i'm what's
how's that's there's let's answer ask reply respond read return sort split start stop turn try wait
""".split())
#: "I" and its contractions, capitalised anywhere in a sentence
_FIRST_PERSON = frozenset({"I", "I'm", "I've", "I'll", "I'd", "I’m", "I’ve", "I’ll", "I’d"})
#: a word: letters, with inner apostrophes and hyphens
_WORDS = re.compile(r"[^\W\d_](?:[\w'’\-]*[^\W_])?")
#: what may stand between a sentence's end and its first word (space, quotes, brackets, bullets)
_OPENING = " \t\r\f\v\"'“‘«([{*-•#>"


def may_hold_name(text: str) -> bool:
    """Whether spaCy could report a person in `text` that the privacy engine keeps.

    The engine drops any person without a capital in a cased script (engine._plausible), so only
    letters that are not lower case can start one: a capitalised word, an all-capitals word, or a
    letter of a script without case (CJK, Arabic, Hebrew, Devanagari ...). A text whose every such
    letter is "I" or starts a common opener word at the start of a sentence ("What", "Name", "Please")
    is left to the pattern recognizers and the name recognizers of our own, which always run.
    """
    if all(c.islower() or not c.isalpha() for c in text):
        return False  # the common case of a lower-case text: no scan of words needed
    for m in _WORDS.finditer(text):
        word = m.group(0)
        if all(c.islower() or not c.isalpha() for c in word) or word in _FIRST_PERSON:
            continue
        if not (word[0].isupper() and word[1:] == word[1:].lower() and word.lower() in COMMON_OPENERS
                and _starts_sentence(text, m.start())):
            return True
    return False


def _starts_sentence(text: str, at: int) -> bool:
    i = at
    while i > 0 and text[i - 1] in _OPENING:
        i -= 1
    return i == 0 or text[i - 1] in ".!?:;\n"
