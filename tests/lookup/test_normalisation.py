"""lookup.normalisation: supplier keys and the text fold shared by rules and the lookup."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lookup.normalisation import is_generic_key, normalise_text, supplier_key


@pytest.mark.parametrize(
    "name",
    ["Blue Heron Cafe", "SQ *BLUE HERON CAFE", "SUMUP *Blue Heron Cafe", "Blue Heron Cafe #0042", "blue  heron   CAFE"],
)
def test_supplier_key_processor_and_store_number(name):
    assert supplier_key(name) == "blue heron cafe"


def test_supplier_key_amazon_references_share_key():
    assert supplier_key("AMZN Mktp UK*1F37B5QZ4") == supplier_key("AMZN Mktp UK*9XK22LL01")


def test_supplier_key_amazon_is_generic():
    assert is_generic_key(supplier_key("AMZN Mktp UK*1F37B5QZ4"))


@pytest.mark.parametrize("name", ["PAYPAL *", "PAYPAL*", "paypal", "PayPal Ltd"])
def test_supplier_key_bare_processor(name):
    assert supplier_key(name) == "paypal"


def test_supplier_key_bare_processor_is_generic():
    assert is_generic_key(supplier_key("PAYPAL *"))


def test_supplier_key_processor_with_merchant_not_generic():
    assert is_generic_key(supplier_key("PAYPAL *ADOBE")) is False


@pytest.mark.parametrize(
    "name, key", [("Acme Ltd", "acme"), ("ACME LIMITED", "acme"), ("Acme Trading Co", "acme trading")]
)
def test_supplier_key_legal_suffix(name, key):
    assert supplier_key(name) == key


def test_supplier_key_only_legal_word_kept():
    assert supplier_key("Ltd") == "ltd"


@pytest.mark.parametrize(
    "name, key", [("İSTANBUL KAHVE", "istanbul kahve"), ("Straße", "strasse"), ("STRASSE", "strasse")]
)
def test_supplier_key_unicode_case(name, key):
    assert supplier_key(name) == key


def test_supplier_key_accent_folded():
    assert supplier_key("Café Crème") == supplier_key("CAFE CREME")


@pytest.mark.parametrize("name", ["🍕🍕", "***", "#", "株式会社テスト", "7", "3M"])
def test_supplier_key_symbols_not_empty(name):
    assert supplier_key(name) != ""


@given(st.text(min_size=1, max_size=60).filter(lambda name: name.strip()))
def test_supplier_key_never_empty(name):
    assert supplier_key(name) != ""


@given(st.text(max_size=60))
def test_normalise_text_idempotent(text):
    once = normalise_text(text)

    assert normalise_text(once) == once


@pytest.mark.parametrize(
    "text, folded",
    [
        ("PAYPAL\u00a0\u00a0 INST XFER\t ADOB", "paypal inst xfer adob"),
        ("Inst Xfer Adob", "inst xfer adob"),
        ("STOP & SHOP", "stop shop"),
        ("Stop & Shop #0421", "stop shop 0421"),
        ("A\\B Trading", "a b trading"),
        ("[Draft] (Pty) Ltd", "draft pty ltd"),
        ("REWE Markt 4411", "rewe markt 4411"),
        ("İSTANBUL KAHVE", "istanbul kahve"),
        ("Straße", "strasse"),
        ("ＡＢＣ", "abc"),
    ],
)
def test_normalise_text_cases(text, folded):
    assert normalise_text(text) == folded


@pytest.mark.parametrize("text", ["", "   ", "***", "—"])
def test_normalise_text_no_alphanumerics(text):
    assert normalise_text(text) == ""


@pytest.mark.parametrize(
    "name",
    ["APPLE PAY BLUE HERON CAFE", "Blue Heron Cafe (Apple Pay)", "GOOGLE PAY Blue Heron Cafe", "Gpay blue heron cafe"],
)
def test_supplier_key_wallet_name_dropped(name):
    assert supplier_key(name) == "blue heron cafe"


@pytest.mark.parametrize("name", ["APPLE PAY", "Google Pay"])
def test_supplier_key_bare_wallet_is_generic(name):
    assert is_generic_key(supplier_key(name))


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("J Smith T/A Smith Plumbing", "smith plumbing"),
        ("J SMITH T/AS SMITH PLUMBING", "smith plumbing"),
        ("Sumup *J Smith trading as Smith Plumbing", "smith plumbing"),
        ("T/A", "t a"),
        ("Data Tables Ltd", "data tables"),
    ],
)
def test_supplier_key_trading_name(name, key):
    assert supplier_key(name) == key


@pytest.mark.parametrize(
    "name", ["AMZNMKTPLACE AMAZON.CO.UK", "Amznmktplace", "AMZ*1X2Y3Z4W5", "Amazon.co.uk*MS2ZC7PN4"]
)
def test_supplier_key_amazon_spellings(name):
    assert supplier_key(name) == "amazon"


def test_supplier_key_ebay_order_is_generic():
    key = supplier_key("eBay O*21-06645-34581")

    assert key == "ebay"
    assert is_generic_key(key)


@pytest.mark.parametrize(
    "name", ["D TEC INTERNATIONAL LT", "D Tec International Ltd", "D-TEC INTERNATIONAL.COM", "D Tec International UK"]
)
def test_supplier_key_truncated_and_web_suffixes(name):
    assert supplier_key(name) == "d tec international"
