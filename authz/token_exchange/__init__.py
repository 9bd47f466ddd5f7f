"""RFC 8693 token exchange at the edge: a route may ask for the upstream to get a token its AS exchanged for the
route's audience and scopes (``exchanger``: the request and what is accepted of the answer; ``stage``: the pipeline's
step, with exchanged tokens kept on the cached answer)."""

from authz.token_exchange.exchanger import GRANT_TYPE, TOKEN_TYPES, Exchanged, TokenExchanger
from authz.token_exchange.stage import Exchange, ExchangeStage

__all__ = ["GRANT_TYPE", "TOKEN_TYPES", "Exchange", "ExchangeStage", "Exchanged", "TokenExchanger"]
