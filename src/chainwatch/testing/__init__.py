"""Test helpers that ship with chainwatch: the throwaway PKI factory and the incident lab."""
