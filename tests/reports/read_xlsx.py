"""Prints a workbook's sheets as JSON ({sheet: [[cell, ...], ...]}), read with openpyxl: the
reader a statistician's Python would use. Usage: read_xlsx.py FILE.xlsx"""
import json
import sys

import openpyxl

book = openpyxl.load_workbook(sys.argv[1], read_only=True, data_only=True)
out = {}
for sheet in book.worksheets:
    out[sheet.title] = [list(row) for row in sheet.iter_rows(values_only=True)]
json.dump(out, sys.stdout, default=str)
