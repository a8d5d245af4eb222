"""`rumpy report`: a result tree (or a folder of trees and sweeps) as one self-contained HTML
file: collect.py reads the run folders (no torch), page.py writes the page around report.js."""
