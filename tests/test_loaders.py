"""Loaders: every format, and every kind of bad input named by file, line and field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convrec.knowledge.items import Article, Product, parse_item
from convrec.knowledge.loaders import ItemLoadError, load_items
from tests.conftest import write

PRODUCT = {"id": "p1", "kind": "product", "title": "Blue kettle", "price": 54.0,
           "category": "Kitchen", "in_stock": True, "attributes": {"colour": "blue"}}
ARTICLE = {"id": "a1", "kind": "article", "title": "Shipping delays", "body": "Late parcels."}


def jsonl(path, *records):
    return write(path, "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records))


def test_jsonl_loads_both_kinds(tmp_path):
    result = load_items(jsonl(tmp_path / "items.jsonl", PRODUCT, "", ARTICLE))
    assert [type(i) for i in result.items] == [Product, Article]
    assert result.items[0].attributes == {"colour": "blue"}
    assert result.sources["p1"] == str((tmp_path / "items.jsonl").resolve())


def test_csv_with_tags_attributes_and_booleans(tmp_path):
    path = write(tmp_path / "catalogue.csv",
                 "id,kind,title,price,in_stock,tags,attributes.colour,attributes.litres\n"
                 "k1,product,Red kettle,39.5,false,\"kettle, stovetop\",red,1.7\n"
                 "k2,product,Black kettle,41,true,,black,\n")
    items = load_items(path).items
    assert items[0].in_stock is False and items[0].price == 39.5
    assert items[0].tags == ["kettle", "stovetop"]
    assert items[0].attributes == {"colour": "red", "litres": 1.7}
    assert items[1].attributes == {"colour": "black"}


def test_markdown_folder_with_front_matter(tmp_path):
    write(tmp_path / "kb" / "late.md",
          "---\nid: shipping-delays\ntitle: Late parcels\nsection: Shipping\n"
          "tags: [delay, tracking]\nupdated_at: 2026-09-14\n---\nMost parcels arrive in 5 days.")
    write(tmp_path / "kb" / "sub" / "no-front-matter.md", "# Reset your password\n\nSteps.")
    write(tmp_path / "kb" / "README.md", "not an article")
    items = {i.id: i for i in load_items(tmp_path / "kb").items}
    assert set(items) == {"shipping-delays", "no-front-matter"}
    assert items["shipping-delays"].tags == ["delay", "tracking"]
    assert items["shipping-delays"].updated_at.year == 2026
    assert items["no-front-matter"].title == "Reset your password"


def test_html_article_title_and_text(tmp_path):
    write(tmp_path / "warranty.html",
          "<html><head><title>Warranty claims</title><style>p{}</style></head><body>"
          "<h1>Warranty</h1><p>Two years on kettles.</p><script>x()</script></body></html>")
    (item,) = load_items(tmp_path / "warranty.html").items
    assert item.title == "Warranty claims" and item.id == "warranty"
    assert "Two years on kettles." in item.body and "x()" not in item.body


@pytest.mark.parametrize(
    ("lines", "line", "field", "message"),
    [
        ([PRODUCT, "{not json"], 2, None, "invalid JSON"),
        ([PRODUCT, {"id": "p2", "kind": "product"}], 2, "title", "Field required"),
        ([{**PRODUCT, "price": "cheap"}], 1, "price", "valid number"),
        ([{**PRODUCT, "price": -1}], 1, "price", "greater than or equal"),
        ([{**PRODUCT, "colour": "x"}], 1, "colour", "Extra inputs"),
        ([{**PRODUCT, "kind": "video"}], 1, "kind", ""),
        ([PRODUCT, {**PRODUCT, "title": "again"}], 2, "id", "duplicate id 'p1'"),
        ([{**PRODUCT, "id": "has space"}], 1, "id", "pattern"),
        (["[1, 2]"], 1, None, "expected a JSON object"),
    ],
)
def test_bad_jsonl_names_file_line_and_field(tmp_path, lines, line, field, message):
    path = jsonl(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(ItemLoadError) as info:
        load_items(path)
    issue = info.value.issues[-1]
    assert (issue.file, issue.line, issue.field) == (str(path), line, field)
    assert message in issue.message
    assert f"{path}:{line}" in str(info.value)


def test_bad_csv_cell_names_line_and_field(tmp_path):
    path = write(tmp_path / "c.csv", "id,title,price,in_stock\nk1,Kettle,10,true\n"
                 "k2,Pan,ten,true\n")
    with pytest.raises(ItemLoadError) as info:
        load_items(path)
    (issue,) = info.value.issues
    assert (issue.line, issue.field) == (3, "price")


def test_csv_line_numbers_count_multiline_cells(tmp_path):
    path = write(tmp_path / "c.csv", 'id,title,description,price\nk1,Kettle,"two\nlines",10\n'
                 "k2,Pan,ok,bad\n")
    with pytest.raises(ItemLoadError) as info:
        load_items(path)
    assert info.value.issues[0].line == 4


def test_markdown_bad_front_matter_names_the_file(tmp_path):
    path = write(tmp_path / "kb" / "broken.md", "---\ntitle: [unclosed\n---\nBody")
    with pytest.raises(ItemLoadError) as info:
        load_items(tmp_path / "kb")
    assert info.value.issues[0].file == str(path)
    assert "front matter" in info.value.issues[0].message


def test_missing_path_and_unsupported_type(tmp_path):
    write(tmp_path / "items.xml", "<x/>")
    with pytest.raises(ItemLoadError) as info:
        load_items([tmp_path / "nope.jsonl", tmp_path / "items.xml"])
    messages = [i.message for i in info.value.issues]
    assert "no such file or folder" in messages[0] and "unsupported" in messages[1]


def test_skip_invalid_keeps_valid_rows_and_lists_rejected(tmp_path):
    path = jsonl(tmp_path / "mixed.jsonl", PRODUCT, {"id": "bad", "kind": "product"}, ARTICLE)
    result = load_items(path, skip_invalid=True)
    assert [i.id for i in result.items] == ["p1", "a1"]
    assert [(r.line, r.field) for r in result.rejected] == [(2, "title")]


def test_tenant_fills_records_without_one(tmp_path):
    path = jsonl(tmp_path / "i.jsonl", PRODUCT, {**ARTICLE, "tenant": "acme"})
    items = load_items(path, tenant="shop").items
    assert [i.tenant for i in items] == ["shop", "acme"]


def test_long_article_body_is_clipped_deliberately():
    body = "word " * 2000
    from convrec.knowledge.items import BODY_CHARS

    article = parse_item({**ARTICLE, "body": body})
    text = article.encoding_text()
    assert text.startswith("Shipping delays. Shipping delays")
    assert len(text) < BODY_CHARS + 100 and text.endswith("…")
    assert BODY_CHARS - 10 <= len(article.body_text()) <= BODY_CHARS + 1


_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "title": _text.filter(str.strip),
    "price": st.floats(0, 1e6, allow_nan=False),
    "in_stock": st.booleans(),
    "description": _text,
}), min_size=1, max_size=6))
def test_csv_round_trips_any_valid_rows(tmp_path_factory, rows):
    import csv

    path = tmp_path_factory.mktemp("csv") / "rows.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["id", "kind", "title", "price", "in_stock",
                                         "description"])
        writer.writeheader()
        for n, row in enumerate(rows):
            writer.writerow({"id": f"p{n}", "kind": "product", **row})
    items = load_items(path).items
    assert [i.title for i in items] == [r["title"].strip() for r in rows]
    assert [i.price for i in items] == [pytest.approx(float(repr(r["price"]))) for r in rows]
    assert [i.in_stock for i in items] == [r["in_stock"] for r in rows]
