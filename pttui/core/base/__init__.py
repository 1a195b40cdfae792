"""The ground floor: the data model, dtypes, numbers for people, partial files."""
