import Integration

Route.serve(ConnectHandler.init(configuration:))
