"""PostgREST's select and filter grammars, and single builder rules, on their own (no database)."""

from __future__ import annotations

import pytest

from loaders.audit.model import Expr, Template
from loaders.audit.postgrest import (Condition, Count, Embed, Field, Group, PostgrestSyntaxError, Star, parse_column,
                                     parse_logic, parse_select)
from loaders.audit.scan import scan_source
from loaders.audit.translate import translate


def test_select_items_aliases_casts_json_paths_and_embeds() -> None:
    items = parse_select("""id, label:title, price::text, data->meta->>level,
                            author:profiles!courses_owner_id_fkey(full_name), lessons!inner(count), *""")
    assert items[0] == Field(parse_column("id"))
    assert items[1] == Field(parse_column("title"), alias="label")
    assert items[2] == Field(parse_column("price"), cast="text")
    assert items[3].key == "level" and items[3].path.steps == (("->", "meta"), ("->>", "level"))
    assert items[4] == Embed("profiles", [Field(parse_column("full_name"))], alias="author", hint="courses_owner_id_fkey")
    assert items[5] == Embed("lessons", [Count()], inner=True)
    assert items[6] == Star()


def test_whitespace_is_stripped_outside_quotes_like_supabase_js() -> None:
    assert parse_select(' "my col" , x ') == [Field(parse_column('"my col"')), Field(parse_column("x"))]
    assert parse_select("")[0] == Star()


@pytest.mark.parametrize("bad", ["id,,title", "lessons(id", "id)", '"open'])
def test_malformed_select_is_a_syntax_error(bad: str) -> None:
    with pytest.raises(PostgrestSyntaxError):
        parse_select(bad)


def test_logic_tree_with_nested_groups_negation_lists_and_template_values() -> None:
    tree = parse_logic(Template(("status.in.(draft,published),and(price.gt.", Expr("min"),
                                 ",title.not.ilike.*sql*),deleted_at.is.null")))
    assert tree == Group("or", [
        Condition("status", "in", ("draft", "published")),
        Group("and", [Condition("price", "gt", Expr("min")), Condition("title", "ilike", "*sql*", negate=True)]),
        Condition("deleted_at", "is", "null"),
    ])


def test_unknown_operator_is_named() -> None:
    with pytest.raises(PostgrestSyntaxError, match="unknown operator 'equals'"):
        parse_logic("a.equals.1")


def sql_of(code: str):
    [found] = scan_source(code.encode(), "x.ts", tsx=False)
    call = translate(found, None)
    return call.sql, call.params, call.status, call.message


def test_or_with_template_and_like_star_becomes_parameters() -> None:
    assert sql_of("sb.from('t').select('a').or(`name.ilike.*${q}*,id.in.(1,2)`)") == (
        "SELECT a FROM t WHERE (name ILIKE $1 OR id = ANY ($2))", ["`%${q}%`", "['1', '2']"], "translated", "")


def test_reserved_words_are_quoted_and_schema_switch_is_kept() -> None:
    assert sql_of("sb.schema('billing').from('order').select('user, select')")[0] == \
        'SELECT "user", "select" FROM billing."order"'


def test_range_with_literals_and_single() -> None:
    assert sql_of("sb.from('t').select().range(20, 29).single()")[:2] == ("SELECT * FROM t LIMIT $1 OFFSET $2", ["10", "20"])


def test_upsert_without_on_conflict_needs_the_primary_key_from_the_target() -> None:
    sql, _, status, message = sql_of("sb.from('t').upsert({ id: 1, a: x })")
    assert (sql, status) == (None, "manual") and "needs --target" in message


def test_delete_without_filter_is_flagged() -> None:
    assert sql_of("sb.from('t').delete()") == ("DELETE FROM t", [], "translated", "no filter: deletes every row")


def test_unknown_builder_method_is_manual_not_guessed() -> None:
    sql, _, status, message = sql_of("sb.from('t').select('a').someNewFilter('a', 1)")
    assert (sql, status) == (None, "manual") and message.startswith("someNewFilter()")


def test_dynamic_select_string_is_manual() -> None:
    sql, _, status, message = sql_of("sb.from('t').select(`a, ${extra}`)")
    assert (sql, status) == (None, "manual") and "computed at run time" in message
