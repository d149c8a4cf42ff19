"""Ticketing: After-sales tickets, routing and SLAs (its features arrive with the ticketing issue)."""
