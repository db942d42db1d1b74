"""Modbus TCP field protocol.

    codec       pure: registers <-> values, read planning
    profile     device profiles (register maps) from config/profiles/*.toml
    client      ModbusTcpDriver, the FieldDriver for one Modbus TCP unit
    simulator   LightingControllerSimulator, a real Modbus TCP server for tests, benches, the demo

Nothing is imported here, so that loading a profile does not import pymodbus.
"""
