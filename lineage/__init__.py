"""Lineage graph: artifacts, actions, contexts and typed associations; recursive queries; OpenLineage.

A sink: other domains record into it through ``lineage.service``; it imports none of them.
"""
