"""Counting: from person boxes to what a camera's people are, per zone.

Owns the per-camera scene knowledge learned from the camera's own frames: the expected person
height along the floor (perspective), the burnt-in text overlays (clock, camera name, logo) and
the static clutter (places whose box and pixels never change).
Pipeline, zones, presence, occupancy and calibration move here as they are worked on (see
shared/design/house-style.md). Pure: imports the standard library, numpy, scipy and edge.types;
no files, threads or clocks (state goes in and out as plain dicts).
"""
