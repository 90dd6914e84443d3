"""Our own recognizers: checksums decide, formats vary, look-alikes are left alone."""

from __future__ import annotations

import pytest

from schemas.redaction import Entity
from streams.privacy.recognizers import (
    Span,
    find_addresses,
    find_cards,
    find_emails,
    find_ibans,
    find_names,
    find_phones,
    find_secrets,
    iban_valid,
    luhn_valid,
    resolve,
)


def found(finder, text):
    return [text[s.start:s.end] for s in finder(text)]


@pytest.mark.parametrize("card", ["4111 1111 1111 1111", "4111111111111111", "5500-0000-0000-0004", "378282246310005"])
def test_cards_with_a_valid_luhn_digit_are_found(card):
    assert found(find_cards, f"pay with {card} please") == [card]


def test_numbers_that_fail_luhn_or_repeat_one_digit_are_not_cards():
    assert not luhn_valid("4111111111111112")
    assert found(find_cards, "order 4111 1111 1111 1112 and 0000 0000 0000 0000") == []


@pytest.mark.parametrize("iban", ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR14 2004 1010 0505 0001 3M02 606",
                                  "NL91ABNA0417164300", "ES91 2100 0418 4502 0005 1332"])
def test_ibans_of_several_countries(iban):
    assert found(find_ibans, f"send it to {iban} today") == [iban]


def test_iban_checksum_and_length_are_checked():
    assert iban_valid("DE89370400440532013000")
    assert not iban_valid("DE89370400440532013001")  # mod-97 fails
    assert not iban_valid("DE8937040044053201300")  # a German IBAN has 22 characters
    assert found(find_ibans, "IBAN DE89 3704 0044 0532 0130 00 AND MORE") == ["DE89 3704 0044 0532 0130 00"]


@pytest.mark.parametrize("phone", ["+1 415 555 0123", "+44 20 7946 0958", "+49 (0)30 1234567", "(415) 555-0123",
                                   "415.555.0123", "020 7946 0958", "06 12 34 56 78", "0049 30 12345678"])
def test_phone_formats(phone):
    assert found(find_phones, f"call me on {phone}.") == [phone]


def test_dates_and_short_numbers_are_not_phones():
    assert found(find_phones, "on 2024-01-15 we sold 12345 units, version 3.11.7") == []


@pytest.mark.parametrize("address", ["221B Baker Street", "1600 Pennsylvania Avenue NW, Washington, DC 20500",
                                     "Hauptstraße 5, 10115 Berlin", "12 rue de la Paix", "42 Elm St., Springfield"])
def test_street_addresses(address):
    assert found(find_addresses, f"I live at {address}") == [address]


@pytest.mark.parametrize("secret", ["sk-abc123XYZdef456GHI789jkl", "AKIAIOSFODNN7EXAMPLE",
                                    "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
                                    "xoxb-1234567890-abcdefghij", "Zx9Qm2Lp8Rt5Wv3Ny7Kb4Hd6"])
def test_secrets_by_prefix_and_by_entropy(secret):
    assert found(find_secrets, f"the key is {secret} ok") == [secret]


def test_ordinary_long_words_are_not_secrets():
    assert found(find_secrets, "internationalization_configuration_manager and Pneumonoultramicroscopic") == []


def test_resolve_keeps_the_checksummed_span_over_an_overlapping_guess():
    card = Span(0, 19, Entity.CARD, 0.95)
    phone = Span(5, 19, Entity.PHONE, 0.7)
    person = Span(25, 35, Entity.PERSON, 0.85)
    assert resolve([phone, person, card]) == [card, person]


@pytest.mark.parametrize(("text", "name"), [
    ("A portrait of Margaret Thornbury holding a red umbrella.", "Margaret Thornbury"),
    ("Ask Nadia Petrova whether it came.", "Nadia Petrova"),
    ("Dear Mrs. Patterson, thanks.", "Patterson"),
    ("Hi, my name is Rowan Featherstone.", "Rowan Featherstone"),
    ("Send it to Søren Kierkegaard today.", "Søren Kierkegaard"),
])
def test_names_spacy_may_miss(text, name):
    assert found(find_names, text) == [name]


def test_given_names_before_ordinary_capitalised_words_are_not_taken_for_full_names():
    assert found(find_names, "Paris is lovely. Anna And Friday are here. I am Sorry.") == []


def test_a_diet_after_i_am_is_not_a_name_but_a_name_still_is():
    assert found(find_names, "I am Vegan. I'm Gluten-free. I am Pescatarian now.") == []
    assert found(find_names, "I am Rowan, and I am Vegetarian.") == ["Rowan"]


@pytest.mark.parametrize("email", ["customer.care@shop.example", "h.tanaka+work@company.jp", "a@b.co"])
def test_emails(email):
    assert found(find_emails, f"write to {email}.") == [email]
