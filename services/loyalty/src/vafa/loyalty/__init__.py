"""Loyalty: the club's points ledger, earned and reversed by attributed purchases."""
