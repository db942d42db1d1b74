"""Modbus field protocol: TCP, and RTU over a shared serial (RS-485) line.

    codec          pure: registers <-> values, read planning, transport-independent requests
    rtu            pure: RTU frame sizes, CRC, line timing, judging a received answer
    profile        device profiles (register maps) from config/profiles/*.toml
    base           ModbusDriverBase: what the TCP and RTU drivers share (reading, verified writes)
    client         ModbusTcpDriver, the FieldDriver for one Modbus TCP unit
    serial_line    SerialLine: one serial port shared fairly by the RTU units on it
    scheduling     the line's fair lock and per-unit backoff (pure, clock injected)
    serial_port    line settings checks; why a port cannot be opened, and the fix
    rtu_driver     ModbusRtuDriver, the FieldDriver for one unit on a SerialLine
    simulator      LightingControllerSimulator, a real Modbus TCP server for tests, benches, the demo
    bus_simulator  SerialBusSimulator: several simulators as RTU units on one serial port, with faults
    pty_pair       PtyPair: two pseudo-terminals joined by socat, a serial cable for tests and demos

Nothing is imported here, so that loading a profile does not import pymodbus.
"""
