"""Faust stream processors: validate readings, evaluate rules, keep warning state, route.

Pure logic (validation, rules, warning lifecycle) lives in modules that do not
import Faust, so it is unit-tested without a broker and reused by backtests.
"""
