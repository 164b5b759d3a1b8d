"""What the tests share: real processes, a real sshd and Mosquitto, the controller harnesses, fake fleets.

Test modules import from here and from `obstop`, never from one another. Nothing here mocks anything.
"""
