"""convrec: a recommendation plugin for chat agents."""
