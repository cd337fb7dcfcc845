"""The Admin GraphQL subset: resolvers over the discount store, and query cost (the schema
is in `sandbox.shopify_schema`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    execute_sync,
    get_named_type,
    is_leaf_type,
    parse,
    validate,
)

from sandbox.shopify_discounts import CodeDiscount, DiscountStore, InvalidInput, iso
from sandbox.shopify_schema import SCHEMA

__all__ = ["SCHEMA", "AdminQuery", "prepare"]

#: What one mutation costs, as Shopify counts it.
MUTATION_COST = 10
#: What a connection costs before its nodes.
CONNECTION_BASE_COST = 2

_UNDEFINED_FIELD = re.compile(r"""^Cannot query field ["'](\w+)["'] on type ["'](\w+)["']""")


@dataclass
class Prepared:
    """A parsed, validated operation and what each of its top-level fields costs."""

    document: DocumentNode
    operation: OperationDefinitionNode
    field_costs: dict[str, int]

    @property
    def requested_cost(self) -> int:
        return sum(self.field_costs.values())

    @property
    def is_mutation(self) -> bool:
        return self.operation.operation == OperationType.MUTATION


def prepare(
    query: str, operation_name: str | None, variables: dict[str, Any]
) -> Prepared | list[dict[str, Any]]:
    """Parse and validate; the formatted errors when either fails."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        return [_formatted(exc)]
    errors = validate(SCHEMA, document)
    if errors:
        return [_formatted(e) for e in errors]
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
        if not operations:
            return [{"message": f'No operation named "{operation_name}"'}]
    elif len(operations) > 1:
        return [{"message": "An operation name is required"}]
    operation = operations[0]
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    costs = _Cost(fragments, variables)
    if operation.operation == OperationType.MUTATION:
        field_costs = {
            _key(f): MUTATION_COST
            for f in operation.selection_set.selections
            if isinstance(f, FieldNode) and not f.name.value.startswith("__")
        }
    else:
        root = SCHEMA.query_type
        assert root is not None
        field_costs = costs.top_level(root, operation.selection_set)
    return Prepared(document, operation, field_costs)


class AdminQuery:
    """Resolves one operation against the discount store (call with the emulator's lock)."""

    def __init__(
        self, store: DiscountStore, now: datetime, currency: str, shop: dict[str, Any]
    ) -> None:
        self.store = store
        self.now = now
        self.currency = currency
        self.shop = shop

    def execute(self, prepared: Prepared, variables: dict[str, Any]) -> ExecutionResult:
        root: dict[str, Any]
        if prepared.is_mutation:
            root = {
                "discountCodeBasicCreate": self._create("basic", "basicCodeDiscount"),
                "discountCodeFreeShippingCreate": self._create(
                    "free_shipping", "freeShippingCodeDiscount"
                ),
                "discountCodeDelete": self._delete,
            }
        else:
            root = {
                "codeDiscountNodeByCode": lambda _info, code: self._node(self.store.by_code(code)),
                "codeDiscountNode": lambda _info, id: self._node(self.store.by_gid(id)),
                "shop": self.shop,
            }
        result = execute_sync(
            SCHEMA,
            prepared.document,
            root_value=root,
            variable_values=variables,
            operation_name=prepared.operation.name.value if prepared.operation.name else None,
        )
        return result

    def _create(self, kind: str, argument: str) -> Callable[..., dict[str, Any]]:
        def create(_info: Any, **args: Any) -> dict[str, Any]:
            try:
                discount, errors = self.store.create(kind, argument, args[argument], self.now)
            except InvalidInput as exc:
                raise GraphQLError(
                    f"Variable {argument} was provided invalid value: {exc}"
                ) from None
            return {"codeDiscountNode": self._node(discount), "userErrors": errors}

        return create

    def _delete(self, _info: Any, id: str) -> dict[str, Any]:
        if self.store.delete(id):
            return {"deletedCodeDiscountId": id, "userErrors": []}
        error = {"field": ["id"], "message": "Discount does not exist", "code": "INVALID"}
        return {"deletedCodeDiscountId": None, "userErrors": [error]}

    def _node(self, discount: CodeDiscount | None) -> dict[str, Any] | None:
        if discount is None:
            return None
        return {"id": discount.gid, "codeDiscount": self._code_discount(discount)}

    def _code_discount(self, d: CodeDiscount) -> dict[str, Any]:
        body: dict[str, Any] = {
            "__typename": "DiscountCodeBasic" if d.kind == "basic" else "DiscountCodeFreeShipping",
            "title": d.title,
            "status": d.status(self.now),
            "summary": self._summary(d),
            "startsAt": iso(d.starts_at),
            "endsAt": iso(d.ends_at),
            "createdAt": iso(d.created_at),
            "updatedAt": iso(d.created_at),
            "codes": lambda _info, **page: _codes(d, page),
            "codesCount": {"count": 1, "precision": "EXACT"},
            "usageLimit": d.usage_limit,
            "appliesOncePerCustomer": d.applies_once_per_customer,
            "asyncUsageCount": d.usage_count,
            "customerSelection": (
                {"__typename": "DiscountCustomers", "customers": [{"id": c} for c in d.customers]}
                if d.customers
                else {"__typename": "DiscountCustomerAll", "allCustomers": True}
            ),
            "combinesWith": d.combines_with,
        }
        if "amount" in d.value:
            value: dict[str, Any] = {
                "__typename": "DiscountAmount",
                "amount": {"amount": d.value["amount"], "currencyCode": self.currency},
                "appliesOnEachItem": d.value["applies_on_each_item"],
            }
            body["customerGets"] = {"value": value, "items": _ALL_ITEMS}
        elif "percentage" in d.value:
            value = {"__typename": "DiscountPercentage", "percentage": d.value["percentage"]}
            body["customerGets"] = {"value": value, "items": _ALL_ITEMS}
        elif "maximum_shipping_price" in d.value:
            price = d.value["maximum_shipping_price"]
            body["maximumShippingPrice"] = {"amount": price, "currencyCode": self.currency}
        return body

    def _summary(self, d: CodeDiscount) -> str:
        if "amount" in d.value:
            return f"{d.value['amount']} {self.currency} off entire order"
        if "percentage" in d.value:
            return f"{d.value['percentage'] * 100:g}% off entire order"
        return "Free shipping on all products"


_ALL_ITEMS = {"__typename": "AllDiscountItems", "allItems": True}


def _codes(d: CodeDiscount, page: dict[str, Any]) -> dict[str, Any]:
    first, last = page.get("first"), page.get("last")
    if first is None and last is None:
        raise GraphQLError("you must provide one of first or last")
    count = first if first is not None else last
    node = {
        "id": f"gid://shopify/DiscountRedeemCode/{d.code_id}",
        "code": d.code,
        "asyncUsageCount": d.usage_count,
    }
    nodes = [node] if count and count > 0 else []
    cursor = "eyJsYXN0X2lkIjoxfQ=="
    return {
        "nodes": nodes,
        "edges": [{"cursor": cursor, "node": n} for n in nodes],
        "pageInfo": {
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": cursor if nodes else None,
            "endCursor": cursor if nodes else None,
        },
    }


class _Cost:
    """Shopify's calculated query cost: objects 1, scalars 0, connections 2 + n x node."""

    def __init__(
        self, fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any]
    ) -> None:
        self.fragments = fragments
        self.variables = variables

    def top_level(self, root: GraphQLObjectType, selection: SelectionSetNode) -> dict[str, int]:
        costs: dict[str, int] = {}
        for node in self._fields(root, selection):
            if not node.name.value.startswith("__"):
                costs[_key(node)] = costs.get(_key(node), 0) + self._field(root, node)
        return costs

    def _fields(self, parent: GraphQLNamedType, selection: SelectionSetNode) -> list[FieldNode]:
        found: list[FieldNode] = []
        for node in selection.selections:
            if isinstance(node, FieldNode):
                found.append(node)
            elif isinstance(node, InlineFragmentNode):
                found.extend(self._fields(parent, node.selection_set))
            elif isinstance(node, FragmentSpreadNode):
                fragment = self.fragments.get(node.name.value)
                if fragment is not None:
                    found.extend(self._fields(parent, fragment.selection_set))
        return found

    def _selection(self, parent: GraphQLNamedType, selection: SelectionSetNode | None) -> int:
        if selection is None:
            return 0
        total = 0
        for node in selection.selections:
            if isinstance(node, FieldNode):
                total += self._field(parent, node)
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition
                target = SCHEMA.get_type(condition.name.value) if condition else parent
                total += self._selection(target or parent, node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                fragment = self.fragments.get(node.name.value)
                if fragment is not None:
                    target = SCHEMA.get_type(fragment.type_condition.name.value)
                    total += self._selection(target or parent, fragment.selection_set)
        return total

    def _field(self, parent: GraphQLNamedType, node: FieldNode) -> int:
        if node.name.value.startswith("__") or not isinstance(parent, GraphQLObjectType):
            return 0
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return 0
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0
        if named.name.endswith("Connection"):
            size = self._page_size(node)
            assert isinstance(named, GraphQLObjectType)
            inner = get_named_type(named.fields["nodes"].type)
            # Each node is an object (1) plus what is selected inside it, counted once
            # whether it is asked for through `nodes` or `edges { node }`.
            inside = [0]
            for child in self._fields(named, node.selection_set or _EMPTY):
                if child.name.value == "nodes":
                    inside.append(self._selection(inner, child.selection_set))
                elif child.name.value == "edges":
                    for edge_child in self._fields(named, child.selection_set or _EMPTY):
                        if edge_child.name.value == "node":
                            inside.append(self._selection(inner, edge_child.selection_set))
            return CONNECTION_BASE_COST + size * (1 + max(inside))
        return 1 + self._selection(named, node.selection_set)

    def _page_size(self, node: FieldNode) -> int:
        for argument in node.arguments or ():
            if argument.name.value in ("first", "last"):
                value = argument.value
                if isinstance(value, IntValueNode):
                    return int(value.value)
                if isinstance(value, VariableNode):
                    given = self.variables.get(value.name.value)
                    return given if isinstance(given, int) else 0
        return 0


_EMPTY = SelectionSetNode(selections=())


def _key(node: FieldNode) -> str:
    return node.alias.value if node.alias else node.name.value


def _formatted(error: GraphQLError) -> dict[str, Any]:
    body: dict[str, Any] = dict(error.formatted)
    # Shopify words the most common mistake its own way.
    found = _UNDEFINED_FIELD.match(body.get("message", ""))
    if found:
        field, type_name = found.group(1), found.group(2)
        body["message"] = f"Field '{field}' doesn't exist on type '{type_name}'"
        body["extensions"] = {"code": "undefinedField", "typeName": type_name, "fieldName": field}
    return body
