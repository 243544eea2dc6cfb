"""Tests of the views and the HTML report."""
