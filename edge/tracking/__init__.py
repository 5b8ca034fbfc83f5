"""Tracking: identities of people from frame to frame, and the time they spend in each zone.

Owns the track ids (tracks.py) and the visits and dwell figures built on them (dwell.py). Pure:
imports the standard library, numpy, scipy and edge.types; no files, threads or clocks (the
caller hands in the frame's time in seconds on a steady clock). Fed by the counting stage's
boxes and zone assignment; the wait estimate (edge/queueing, issue #13) reads what it gives.

Not yet kept or sent: FrameResult.dwell lives only in the pipeline's result. Storing it with the
history buckets, publishing it beside the occupancy (retained) and serving it in the API is the
next step; visits are keyed by track ids that do not survive a restart, so finished visits that
matter after one must go to the store.
"""
