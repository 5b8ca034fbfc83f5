"""Queueing: what the waiting and queue zones will do, from their counts and the site's history.

Owns the wait estimate, the count and wait forecasts and the diversion advice (issue 13). Pure:
imports the standard library, numpy and edge.types; no files, threads or clocks (times go in as
UTC seconds, history as arrays).
"""
