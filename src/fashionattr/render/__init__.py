"""Rendering results for people: every table (`tables`, Markdown, which the terminal and the reports both show) and
every plot (`plots`). Scores are computed elsewhere (`metrics`, `tag_scores`, `calibration`); this package only
draws them, in one way each, so a new score is added where it is computed and where it is drawn."""
