import Integration

Route.serve(StatusHandler.route)
