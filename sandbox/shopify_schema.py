"""The Admin GraphQL schema the Shopify emulator serves: the discount subset of Shopify's."""

from __future__ import annotations

from graphql import build_schema

__all__ = ["SCHEMA", "SDL"]

SDL = """
schema { query: QueryRoot mutation: Mutation }

scalar DateTime
scalar Decimal

type QueryRoot {
  codeDiscountNodeByCode(code: String!): DiscountCodeNode
  codeDiscountNode(id: ID!): DiscountCodeNode
  shop: Shop!
}

type Mutation {
  discountCodeBasicCreate(
    basicCodeDiscount: DiscountCodeBasicInput!
  ): DiscountCodeBasicCreatePayload
  discountCodeFreeShippingCreate(
    freeShippingCodeDiscount: DiscountCodeFreeShippingInput!
  ): DiscountCodeFreeShippingCreatePayload
  discountCodeDelete(id: ID!): DiscountCodeDeletePayload
}

type Shop { id: ID! name: String! myshopifyDomain: String! currencyCode: CurrencyCode! }

enum CurrencyCode { PLN EUR USD GBP CAD AUD CHF CZK SEK NOK DKK JPY HUF RON }

type DiscountCodeBasicCreatePayload {
  codeDiscountNode: DiscountCodeNode
  userErrors: [DiscountUserError!]!
}
type DiscountCodeFreeShippingCreatePayload {
  codeDiscountNode: DiscountCodeNode
  userErrors: [DiscountUserError!]!
}
type DiscountCodeDeletePayload { deletedCodeDiscountId: ID userErrors: [DiscountUserError!]! }

type DiscountUserError {
  code: DiscountErrorCode extraInfo: String field: [String!] message: String!
}
enum DiscountErrorCode {
  BLANK INVALID TAKEN TOO_LONG GREATER_THAN GREATER_THAN_OR_EQUAL_TO LESS_THAN
  VALUE_OUTSIDE_RANGE MISSING_ARGUMENT TOO_MANY_ARGUMENTS EXCEEDED_MAX PRESENT DUPLICATE
  INTERNAL_ERROR
}

type DiscountCodeNode { id: ID! codeDiscount: DiscountCode! }
union DiscountCode = DiscountCodeBasic | DiscountCodeFreeShipping
enum DiscountStatus { ACTIVE EXPIRED SCHEDULED }

type DiscountCodeBasic {
  title: String!
  status: DiscountStatus!
  summary: String!
  startsAt: DateTime!
  endsAt: DateTime
  createdAt: DateTime!
  updatedAt: DateTime!
  codes(first: Int, after: String, last: Int, before: String): DiscountRedeemCodeConnection!
  codesCount: Count
  usageLimit: Int
  appliesOncePerCustomer: Boolean!
  asyncUsageCount: Int!
  customerSelection: DiscountCustomerSelection!
  customerGets: DiscountCustomerGets!
  combinesWith: DiscountCombinesWith!
}

type DiscountCodeFreeShipping {
  title: String!
  status: DiscountStatus!
  summary: String!
  startsAt: DateTime!
  endsAt: DateTime
  createdAt: DateTime!
  updatedAt: DateTime!
  codes(first: Int, after: String, last: Int, before: String): DiscountRedeemCodeConnection!
  codesCount: Count
  usageLimit: Int
  appliesOncePerCustomer: Boolean!
  asyncUsageCount: Int!
  customerSelection: DiscountCustomerSelection!
  maximumShippingPrice: MoneyV2
  combinesWith: DiscountCombinesWith!
}

type DiscountCombinesWith {
  productDiscounts: Boolean! orderDiscounts: Boolean! shippingDiscounts: Boolean!
}
type Count { count: Int! precision: CountPrecision! }
enum CountPrecision { EXACT AT_LEAST }
type DiscountRedeemCodeConnection {
  nodes: [DiscountRedeemCode!]!
  edges: [DiscountRedeemCodeEdge!]!
  pageInfo: PageInfo!
}
type DiscountRedeemCodeEdge { cursor: String! node: DiscountRedeemCode! }
type DiscountRedeemCode { id: ID! code: String! asyncUsageCount: Int! }
type PageInfo {
  hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String
}

union DiscountCustomerSelection = DiscountCustomerAll | DiscountCustomers
type DiscountCustomerAll { allCustomers: Boolean! }
type DiscountCustomers { customers: [Customer!]! }
type Customer { id: ID! }

type DiscountCustomerGets { value: DiscountCustomerGetsValue! items: DiscountItems! }
union DiscountCustomerGetsValue = DiscountAmount | DiscountPercentage
type DiscountAmount { amount: MoneyV2! appliesOnEachItem: Boolean! }
type DiscountPercentage { percentage: Float! }
type MoneyV2 { amount: Decimal! currencyCode: CurrencyCode! }
union DiscountItems = AllDiscountItems
type AllDiscountItems { allItems: Boolean! }

input DiscountCodeBasicInput {
  title: String
  code: String
  startsAt: DateTime
  endsAt: DateTime
  customerSelection: DiscountCustomerSelectionInput
  context: DiscountContextInput
  customerGets: DiscountCustomerGetsInput
  minimumRequirement: DiscountMinimumRequirementInput
  appliesOncePerCustomer: Boolean
  usageLimit: Int
  recurringCycleLimit: Int
  combinesWith: DiscountCombinesWithInput
}

input DiscountCodeFreeShippingInput {
  title: String
  code: String
  startsAt: DateTime
  endsAt: DateTime
  customerSelection: DiscountCustomerSelectionInput
  context: DiscountContextInput
  destination: DiscountShippingDestinationSelectionInput
  maximumShippingPrice: Decimal
  minimumRequirement: DiscountMinimumRequirementInput
  appliesOncePerCustomer: Boolean
  appliesOnOneTimePurchase: Boolean
  appliesOnSubscription: Boolean
  usageLimit: Int
  recurringCycleLimit: Int
  combinesWith: DiscountCombinesWithInput
}

input DiscountCustomerSelectionInput {
  all: Boolean
  customers: DiscountCustomersInput
  customerSegments: DiscountCustomerSegmentsInput
}
input DiscountContextInput {
  all: DiscountBuyerSelection
  customers: DiscountCustomersInput
  customerSegments: DiscountCustomerSegmentsInput
}
enum DiscountBuyerSelection { ALL }
input DiscountCustomersInput { add: [ID!] remove: [ID!] }
input DiscountCustomerSegmentsInput { add: [ID!] remove: [ID!] }
input DiscountCustomerGetsInput {
  value: DiscountCustomerGetsValueInput
  items: DiscountItemsInput
  appliesOnOneTimePurchase: Boolean
  appliesOnSubscription: Boolean
}
input DiscountCustomerGetsValueInput {
  discountAmount: DiscountAmountInput
  percentage: Float
  discountOnQuantity: DiscountOnQuantityInput
}
input DiscountOnQuantityInput { quantity: String }
input DiscountAmountInput { amount: Decimal appliesOnEachItem: Boolean }
input DiscountItemsInput {
  all: Boolean
  products: DiscountProductsInput
  collections: DiscountCollectionsInput
}
input DiscountProductsInput {
  productsToAdd: [ID!]
  productsToRemove: [ID!]
  productVariantsToAdd: [ID!]
  productVariantsToRemove: [ID!]
}
input DiscountCollectionsInput { add: [ID!] remove: [ID!] }
input DiscountMinimumRequirementInput {
  quantity: DiscountMinimumQuantityInput
  subtotal: DiscountMinimumSubtotalInput
}
input DiscountMinimumQuantityInput { greaterThanOrEqualToQuantity: String }
input DiscountMinimumSubtotalInput { greaterThanOrEqualToSubtotal: Decimal }
input DiscountCombinesWithInput {
  productDiscounts: Boolean orderDiscounts: Boolean shippingDiscounts: Boolean
}
input DiscountShippingDestinationSelectionInput { all: Boolean countries: DiscountCountriesInput }
input DiscountCountriesInput { add: [String!] remove: [String!] includeRestOfWorld: Boolean }
"""


#: Custom scalars (DateTime, Decimal) pass through; the store parses them.
SCHEMA = build_schema(SDL)
